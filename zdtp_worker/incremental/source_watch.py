"""A slow look at the source while the stream runs: slot health, retained WAL, new tables.

Every ``interval`` seconds, on its own short queries (never on the replication connection):

- the WAL the stream's slot retains on the source (``pg_current_wal_lsn() - restart_lsn``) and,
  when ``max_slot_wal_keep_size`` is set, how much more it may retain before the source
  invalidates it (``safe_wal_size``) — exported as metrics so an alert fires before the disk
  fills or the slot is lost;
- an invalidated slot is a data error at once (it never heals; see ``control.slot_guard``);
- tables that match the sync's ``include`` patterns but are not in this stream (created after the
  plan): logged once each and counted in a metric. The stream cannot add them by itself (their
  existing rows need a copy); the next ``full+incremental`` run plans and picks them up;
- the partitions of each streamed partitioned table, as seen before streaming started: a
  partition ``DETACH``ed or ``ATTACH``ed while streaming changes which rows the table holds
  without any row change in the WAL (the target would keep the detached rows, or lack the
  attached ones), so the stream stops with a data error naming it; a ``full+incremental``
  re-run copies the new shape.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import psycopg

from zdtp_worker.contract.errors import DataError
from zdtp_worker.contract.identifiers import TablePattern, render_qualified
from zdtp_worker.control import slot_guard

log = logging.getLogger(__name__)

_TABLES_SQL = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'zdtp') AND n.nspname NOT LIKE 'pg\\_%%'
"""

# Every partition (at any depth) of each partitioned table, by name.
_PARTITIONS_SQL = """
SELECT n.nspname, c.relname,
       ARRAY(SELECT t.relid::regclass::text FROM pg_partition_tree(c.oid) t WHERE t.relid <> c.oid
             ORDER BY 1)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'p' AND NOT c.relispartition
"""


@dataclass(frozen=True)
class WatchReport:
    retained_bytes: int | None
    safe_wal_bytes: int | None
    not_streamed: tuple[str, ...]  # canonical names of matching tables outside this stream


@dataclass
class SourceWatch:
    slot: str
    streamed: set[tuple[str, str]]  # (schema, name) of the stream's source tables
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    interval: float = 15.0
    reported: set[str] = field(default_factory=set)
    last: float = 0.0
    # Streamed partitioned table → its partitions at the first poll (None: not polled yet).
    partitions: dict[tuple[str, str], frozenset[str]] | None = None

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.interval

    def poll(self, conn: psycopg.Connection) -> WatchReport:
        self.last = time.monotonic()
        state = slot_guard.read_slot(conn, self.slot)
        if state is not None and state.invalidated:
            slot_guard.check_resume(state, slot=self.slot, applied_end_lsn=0)  # raises DataError
        if state is None:
            raise DataError(
                f"replication slot {self.slot} disappeared while streaming (dropped by someone);"
                f" changes since are gone; {slot_guard.RERUN}"
            )
        self._check_partitions(conn)
        return WatchReport(
            retained_bytes=state.retained_bytes,
            safe_wal_bytes=state.safe_wal_size,
            not_streamed=tuple(self._new_tables(conn)),
        )

    def prime(self, conn: psycopg.Connection) -> None:
        """Take the partitions' baseline now, when the stream starts (before its lease and state
        row). Taken at the first poll instead, a DETACH/ATTACH between start-up and that poll (the
        loop's first idle moment, seconds later on a busy machine) became the baseline itself and
        went unnoticed. A change while no worker runs (after the copy, before this start) is
        not seen: the baseline is what the source has when the stream starts."""
        if self.partitions is None:
            self._check_partitions(conn)

    def _check_partitions(self, conn: psycopg.Connection) -> None:
        now = {
            (schema, name): frozenset(parts)
            for schema, name, parts in conn.execute(_PARTITIONS_SQL).fetchall()
            if (schema, name) in self.streamed
        }
        if self.partitions is None:
            self.partitions = now
            return
        for table, before in self.partitions.items():
            after = now.get(table, frozenset())
            if after != before:
                changes = [f"{p} detached" for p in sorted(before - after)]
                changes += [f"{p} attached" for p in sorted(after - before)]
                raise DataError(
                    f"source table {render_qualified(*table)}: partitions changed while streaming"
                    f" ({', '.join(changes)}); their rows moved in or out without row changes in the"
                    f" WAL, so the target would diverge; {slot_guard.RERUN}"
                )

    def _new_tables(self, conn: psycopg.Connection) -> list[str]:
        if not self.include:
            return []
        include = [TablePattern(p) for p in self.include]
        exclude = [TablePattern(p) for p in self.exclude]
        out = []
        for schema, name in conn.execute(_TABLES_SQL).fetchall():
            if (schema, name) in self.streamed:
                continue
            if not any(p.matches(schema, name) for p in include) or any(
                p.matches(schema, name) for p in exclude
            ):
                continue
            table = render_qualified(schema, name)
            out.append(table)
            if table not in self.reported:
                self.reported.add(table)
                log.warning(
                    "source table %s matches include but is not in this stream (created after the"
                    " plan?): its changes are not synced; the next full+incremental run picks it up",
                    table,
                )
        return sorted(out)
