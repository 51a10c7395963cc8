"""A steady source writer: the live application a ``full+incremental`` sync must keep up with.

:func:`seed` creates two tables on the source, and :class:`Writer` then commits a rate-limited,
seeded mix of changes to them from its own thread until :meth:`Writer.stop`:

- ``rows`` (default ``public.live_rows``): a big keyed table (seeded with even ids, so inserts and
  key changes land on free odd ids *inside* every chunk's key range, and some above the seeded
  maximum): inserts, updates, primary-key changes and deletes;
- ``docs`` (default ``public.live_docs``): rows whose ``body`` is > 8 kB of random base64, so it
  is stored out of line (TOAST, uncompressible): updates that leave ``body`` unchanged, and
  primary-key changes that leave it unchanged — the change logical decoding sends *without* the
  body ("unchanged TOAST"), which an apply can only complete from the row it already has — plus
  inserts and deletes.

Each transaction holds 1 to 3 changes. The writer is the only writer of these tables, so it knows
every live key and never conflicts with itself. ``stop()`` returns what was committed, per kind.
The seed is printed; the same seed replays the same sequence of choices (timing aside).
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg import sql

KINDS = (
    "insert",
    "update",
    "update_pk",
    "delete",
    "doc_insert",
    "doc_update_toast_unchanged",
    "doc_update_pk_toast_unchanged",
    "doc_delete",
)
# Relative frequency of each kind: mostly updates, PK changes often enough to hit every window.
WEIGHTS = (20, 25, 10, 10, 3, 15, 12, 3)
BODY_BYTES = 9000  # base64 → 12 000 chars: > 8 kB, random, so pglz cannot shrink it in line


@dataclass(frozen=True)
class LiveTables:
    """Names of the writer's two tables (``schema.table``)."""

    rows: str = "public.live_rows"
    docs: str = "public.live_docs"

    @property
    def all(self) -> list[str]:
        return [self.rows, self.docs]


def _ident(name: str) -> sql.Composed:
    schema, table = name.split(".", 1)
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def _body(rng: random.Random) -> str:
    return base64.b64encode(rng.randbytes(BODY_BYTES)).decode()


def seed(dsn: str, *, rows: int, docs: int, tables: LiveTables = LiveTables(), seed: int = 0) -> None:
    """Create and fill the writer's tables (ids 2, 4, …, 2·n) and ANALYZE them for the planner."""
    rng = random.Random(seed)
    r, d = _ident(tables.rows), _ident(tables.docs)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (id bigint PRIMARY KEY, grp int NOT NULL, qty int NOT NULL,"
                " note text, changed_at timestamptz NOT NULL)"
            ).format(r)
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} SELECT 2 * g, g %% 97, g %% 1000, 'row ' || g,"
                " timestamptz '2026-01-01' + g * interval '1 s' FROM generate_series(1, %s) g"
            ).format(r),
            (rows,),
        )
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (id bigint PRIMARY KEY, rev int NOT NULL, title text NOT NULL,"
                " body text NOT NULL)"
            ).format(d)
        )
        with conn.cursor().copy(sql.SQL("COPY {} (id, rev, title, body) FROM STDIN").format(d)) as copy:
            for i in range(1, docs + 1):
                copy.write_row((2 * i, 0, f"doc {2 * i}", _body(rng)))
        conn.execute(sql.SQL("ANALYZE {}, {}").format(r, d))


class _Keys:
    """The live keys of one table: O(1) add, remove and random pick."""

    def __init__(self, keys: list[int]) -> None:
        self.keys = keys
        self.pos = {k: i for i, k in enumerate(keys)}

    def __contains__(self, key: int) -> bool:
        return key in self.pos

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, key: int) -> None:
        self.pos[key] = len(self.keys)
        self.keys.append(key)

    def remove(self, key: int) -> None:
        i = self.pos.pop(key)
        last = self.keys.pop()
        if last != key:
            self.keys[i] = last
            self.pos[last] = i

    def pick(self, rng: random.Random) -> int:
        return self.keys[rng.randrange(len(self.keys))]


@dataclass(frozen=True)
class Event:
    """One committed change: what a failing comparison needs to tell a key's story."""

    at: str  # UTC time the transaction committed (HH:MM:SS.ffffff)
    tx: int  # the writer's transaction number
    kind: str
    table: str  # schema.table
    key: int
    new_key: int | None = None  # key changes and inserts: the key written

    def line(self) -> str:
        moved = f" -> {self.new_key}" if self.new_key is not None and self.new_key != self.key else ""
        return f"{self.at} tx {self.tx} {self.kind} {self.table} {self.key}{moved}"


@dataclass
class WriterReport:
    seed: int
    seconds: float
    transactions: int
    counts: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        kinds = ", ".join(f"{k} {self.counts.get(k, 0)}" for k in KINDS)
        return f"writer (seed {self.seed}): {self.transactions} transactions in {self.seconds:.1f}s: {kinds}"


class Writer:
    """Commits changes to the :class:`LiveTables` at ``rate`` transactions per second.

    ``start()`` runs it in a daemon thread; ``stop()`` ends it and returns a :class:`WriterReport`
    (it raises if the writer failed: a writer that silently stopped would make a test pass that
    proves nothing about a live source).
    """

    def __init__(
        self,
        dsn: str,
        *,
        seed: int | None = None,
        rate: float = 40.0,
        tables: LiveTables = LiveTables(),
        log=print,
    ) -> None:
        self.dsn, self.rate, self.tables = dsn, rate, tables
        self.seed = random.randrange(1 << 32) if seed is None else seed
        self.rng = random.Random(self.seed)
        self.counts: Counter[str] = Counter()
        self.transactions = 0
        self.history: list[Event] = []  # every committed change, in commit order
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zdtp-writer", daemon=True)
        self._log = log
        self._started = 0.0
        self._seconds = 0.0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Writer:
        self._log(f"writer seed {self.seed} ({self.rate:g} transactions/s on {', '.join(self.tables.all)})")
        self._started = time.monotonic()
        self._thread.start()
        return self

    def running(self) -> bool:
        """True while the thread writes; raises what stopped it if it failed."""
        if self.error is not None:
            raise RuntimeError(f"the writer (seed {self.seed}) failed: {self.error!r}") from self.error
        return self._thread.is_alive()

    def report(self) -> WriterReport:
        seconds = self._seconds or (time.monotonic() - self._started if self._started else 0.0)
        return WriterReport(self.seed, seconds, self.transactions, dict(self.counts))

    def stop(self) -> WriterReport:
        self._stop.set()
        self._thread.join(timeout=60)
        if self._thread.is_alive():
            raise RuntimeError(f"the writer (seed {self.seed}) did not stop within 60 s")
        self.running()  # raises if it failed
        return self.report()

    # -- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=False) as conn:
                self._loop(conn)
        except BaseException as exc:  # reported by running()/stop()
            self.error = exc
        finally:
            self._seconds = time.monotonic() - self._started

    def _load_keys(self, conn: psycopg.Connection) -> None:
        rows = [k for (k,) in conn.execute(sql.SQL("SELECT id FROM {}").format(_ident(self.tables.rows)))]
        docs = [k for (k,) in conn.execute(sql.SQL("SELECT id FROM {}").format(_ident(self.tables.docs)))]
        conn.commit()
        self.rows, self.docs = _Keys(sorted(rows)), _Keys(sorted(docs))
        # New keys go to free odd ids inside the seeded range (every chunk's range gets writes)
        # and, one in ten, above the seeded maximum (the planner's last, open-ended range).
        self.row_span = max(rows, default=2)
        self.doc_span = max(docs, default=2)
        self.high = max(self.row_span, self.doc_span) + 1

    def _free_id(self, keys: _Keys, span: int) -> int:
        if self.rng.random() >= 0.1:
            # A small table's free odd ids run out (its rows end up on them): then go above.
            for _ in range(20):
                candidate = 2 * self.rng.randrange(span // 2 + 1) + 1
                if candidate not in keys:
                    return candidate
        self.high += 2 if self.high % 2 else 1
        while self.high in keys:
            self.high += 2
        return self.high

    def _loop(self, conn: psycopg.Connection) -> None:
        self._load_keys(conn)
        interval = 1.0 / self.rate
        due = time.monotonic()
        while not self._stop.is_set():
            done: list[tuple[str, str, int, int | None]] = []
            with conn.transaction():
                for _ in range(self.rng.choice((1, 1, 2, 3))):
                    kind = self.rng.choices(KINDS, WEIGHTS)[0]
                    change = self._apply(conn, kind)
                    if change:
                        done.append((kind, *change))
            # Counted only once committed: the report is what the source really holds.
            at = datetime.now(UTC).strftime("%H:%M:%S.%f")
            self.transactions += 1
            self.counts.update(kind for kind, *_ in done)
            self.history += [Event(at, self.transactions, *change) for change in done]
            due += interval
            pause = due - time.monotonic()
            if pause > 0:
                self._stop.wait(pause)
            else:
                due = time.monotonic()  # behind (busy machine): do not burst to catch up

    def trace(self, table: str, key: int, *, before: int | None = None) -> list[Event]:
        """The committed changes of the row at ``key`` (as of history position ``before``, default:
        now), following its key changes back to its insert or seeded key."""
        end = len(self.history) if before is None else before
        touching = [
            i for i in range(end) if (e := self.history[i]).table == table and key in (e.key, e.new_key)
        ]
        # The row now at ``key`` arrived by the last insert or key change into ``key``, if any.
        arrivals = [i for i in touching if self.history[i].new_key == key]
        start = arrivals[-1] if arrivals else 0
        own = [self.history[i] for i in touching if i >= start]
        if arrivals and (moved := self.history[start]).key != key:
            return self.trace(table, moved.key, before=start) + own
        return own

    def _apply(self, conn: psycopg.Connection, kind: str) -> tuple[str, int, int | None] | None:
        """One change; returns (table, key, new key) or None when nothing was done."""
        rng, r, d = self.rng, _ident(self.tables.rows), _ident(self.tables.docs)
        if kind.startswith("doc_"):
            keys, span, table, label = self.docs, self.doc_span, d, self.tables.docs
        else:
            keys, span, table, label = self.rows, self.row_span, r, self.tables.rows
        if kind in ("insert", "doc_insert"):
            new = self._free_id(keys, span)
            if kind == "insert":
                conn.execute(
                    sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, now())").format(r),
                    (new, rng.randrange(97), rng.randrange(1000), f"inserted {new}"),
                )
            else:
                conn.execute(
                    sql.SQL("INSERT INTO {} VALUES (%s, 0, %s, %s)").format(d),
                    (new, f"doc {new}", _body(rng)),
                )
            keys.add(new)
            return label, new, new
        if len(keys) < 10:  # keep something to change
            return None
        key = keys.pick(rng)
        if kind in ("delete", "doc_delete"):
            conn.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(table), (key,))
            keys.remove(key)
        elif kind == "update":
            conn.execute(
                sql.SQL("UPDATE {} SET qty = qty + %s, note = %s, changed_at = now() WHERE id = %s").format(
                    r
                ),
                (rng.randrange(1, 50), f"updated {self.transactions}", key),
            )
        elif kind == "doc_update_toast_unchanged":
            conn.execute(
                sql.SQL("UPDATE {} SET rev = rev + 1, title = %s WHERE id = %s").format(d),
                (f"rev of {key}", key),
            )
        elif kind in ("update_pk", "doc_update_pk_toast_unchanged"):
            new = self._free_id(keys, span)
            if kind == "update_pk":
                conn.execute(
                    sql.SQL("UPDATE {} SET id = %s, note = %s WHERE id = %s").format(r),
                    (new, f"moved from {key}", key),
                )
            else:  # body untouched: decoding sends it as "unchanged TOAST"
                conn.execute(
                    sql.SQL("UPDATE {} SET id = %s, rev = rev + 1 WHERE id = %s").format(d), (new, key)
                )
            keys.remove(key)
            keys.add(new)
            return label, key, new
        return label, key, None
