"""The target side of a CDC stream: lease, state, table DDL and set-based apply of a batch.

One psycopg 3 connection does everything, on purpose: the session-level advisory lock (the
lease) lives on the same connection that writes, so a worker that lost its lease cannot write
either. Each target transaction ends with :meth:`Target.commit`, which moves the stream's row in
``zdtp.cdc_state`` from the LSN this worker last saw to the new one and fails if somebody else
moved it (fencing on top of the lease).

A batch is applied per table through a temporary staging table: one ``COPY`` of the compacted
entries, then at most three statements (``DELETE ... USING``, ``INSERT ... ON CONFLICT DO UPDATE``,
and an ``UPDATE`` for rows whose TOASTed columns did not change). Values stay in PostgreSQL's text
form from the source to the target; both sessions use the same DateStyle/IntervalStyle.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from datetime import datetime

import psycopg

from zdtp_worker.contract.errors import DataError, TemporaryError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.incremental.batch import DELETED, Batch, TableBatch
from zdtp_worker.incremental.pgoutput import UNCHANGED, Relation, Value, format_lsn, parse_lsn

log = logging.getLogger(__name__)

LEASE_CLASS = 0x7A647470  # "zdtp": first key of the two-int advisory lock
SESSION_OPTIONS = "-c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3 -c TimeZone=UTC"
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 3, "keepalives_count": 3}

STATE_DDL = """
CREATE TABLE IF NOT EXISTS zdtp.cdc_state (
    stream text PRIMARY KEY,
    commit_lsn pg_lsn NOT NULL,
    end_lsn pg_lsn NOT NULL,
    commit_time timestamptz,
    transactions bigint NOT NULL DEFAULT 0,
    changes bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""


PK_SQL = """
SELECT a.attname
FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.ord
"""


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lease_key(stream: str) -> int:
    """Second key of the advisory lock: a stable signed 32-bit hash of the stream name."""
    value = zlib.crc32(stream.encode())
    return value - (1 << 32) if value >= (1 << 31) else value


@dataclass(frozen=True)
class TargetTable:
    name: TableName
    columns: dict[str, str]  # name -> format_type(), in attnum order
    pk: tuple[str, ...]


@dataclass
class Shape:
    """How one source relation (as last described by a Relation message) maps onto its target."""

    relation: Relation
    target: TableName
    key_indexes: tuple[int, ...]
    stage: str
    sql_delete: str
    sql_upsert: str
    sql_partial: str
    sql_copy_direct: str
    used_in_txn: bool = False


_ESCAPES = ((b"\\", b"\\\\"), (b"\t", b"\\t"), (b"\n", b"\\n"), (b"\r", b"\\r"))


def copy_value(value: Value) -> bytes:
    """One value in COPY text format (``\\N`` for NULL and for the unused columns of a delete)."""
    if value is None or value is UNCHANGED:
        return b"\\N"
    assert isinstance(value, bytes)
    if b"\\" in value or b"\t" in value or b"\n" in value or b"\r" in value:
        for raw, escaped in _ESCAPES:
            value = value.replace(raw, escaped)
    return value


def stage_rows(tb: TableBatch, *, direct_new: bool = False) -> tuple[bytes, list[bytes], int, int, int]:
    """COPY text for the staging table (``_op``, ``_keep``, columns...), and the op counts.

    With ``direct_new``, full rows of keys the batch inserted first come back separately as plain
    COPY lines for the target table itself (no staging, no ON CONFLICT).
    """
    width = len(tb.relation.columns)
    key_indexes = tb.key_indexes
    new_keys = tb.new_keys if direct_new else set()
    lines: list[bytes] = []
    direct: list[bytes] = []
    append = lines.append
    n_del = n_up = n_part = 0
    for key, entry in tb.entries.items():
        if entry is DELETED:
            values: list[bytes] = [b"\\N"] * width
            for i, k in zip(key_indexes, key, strict=True):
                values[i] = copy_value(k)
            append(b"D\t\\N\t" + b"\t".join(values) + b"\n")
            n_del += 1
            continue
        assert isinstance(entry, list)
        if UNCHANGED in entry:
            keep = ",".join(str(i) for i, v in enumerate(entry) if v is UNCHANGED).encode()
            append(b"P\t{" + keep + b"}\t" + b"\t".join([copy_value(v) for v in entry]) + b"\n")
            n_part += 1
            continue
        # Hot path: one C-level scan of the row decides whether any value needs escaping.
        probe = b"".join([v if v.__class__ is bytes else b"" for v in entry])  # type: ignore[misc]
        if b"\\" in probe or b"\t" in probe or b"\n" in probe or b"\r" in probe:
            row = b"\t".join([copy_value(v) for v in entry]) + b"\n"
        else:
            row = b"\t".join([v if v.__class__ is bytes else b"\\N" for v in entry]) + b"\n"  # type: ignore[misc]
        if key in new_keys:
            direct.append(row)
        else:
            append(b"U\t\\N\t" + row)
        n_up += 1
    return b"".join(lines), direct, n_del, n_up, n_part


class Target:
    def __init__(self, dsn: str, *, stream: str, application_name: str = "zdtp-cdc") -> None:
        self.dsn = dsn
        self.stream = stream
        self.application_name = application_name
        self.conn: psycopg.Connection | None = None
        self.tables: dict[TableName, TargetTable] = {}
        self._stage_seq = 0
        self.commit_lsn = 0
        self.end_lsn = 0

    # -- connection and lease -------------------------------------------------------------
    def connect(self) -> None:
        try:
            self.conn = psycopg.connect(
                self.dsn,
                autocommit=False,
                options=SESSION_OPTIONS,
                application_name=self.application_name,
                connect_timeout=10,
                **KEEPALIVES,
            )
        except psycopg.OperationalError as exc:
            raise TemporaryError(f"target: cannot connect: {first_line(exc)}") from None

    @property
    def c(self) -> psycopg.Connection:
        assert self.conn is not None, "not connected"
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    def try_lease(self) -> bool:
        """Try to take the stream's lease (session advisory lock); never blocks."""
        row = self.c.execute(
            "SELECT pg_try_advisory_lock(%s, %s)", (LEASE_CLASS, lease_key(self.stream))
        ).fetchone()
        self.c.commit()
        return bool(row and row[0])

    def ping(self) -> None:
        self.c.execute("SELECT 1")
        self.c.commit()

    # -- state ----------------------------------------------------------------------------
    def load_state(self) -> tuple[int, int]:
        """Create ``zdtp.cdc_state`` if needed and return the stream's (commit_lsn, end_lsn)."""
        for attempt in range(3):
            try:
                self.c.execute("CREATE SCHEMA IF NOT EXISTS zdtp")
                self.c.execute(STATE_DDL)
                self.c.execute(
                    "INSERT INTO zdtp.cdc_state (stream, commit_lsn, end_lsn) VALUES (%s, '0/0', '0/0')"
                    " ON CONFLICT (stream) DO NOTHING",
                    (self.stream,),
                )
                row = self.c.execute(
                    "SELECT commit_lsn::text, end_lsn::text FROM zdtp.cdc_state WHERE stream = %s",
                    (self.stream,),
                ).fetchone()
                self.c.commit()
                break
            except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
                # Another worker (full sync) created the schema/table concurrently: retry.
                self.c.rollback()
                if attempt == 2:
                    raise
        assert row is not None
        self.commit_lsn, self.end_lsn = parse_lsn(row[0]), parse_lsn(row[1])
        return self.commit_lsn, self.end_lsn

    def commit(
        self, *, commit_lsn: int, end_lsn: int, commit_time: datetime | None, transactions: int, changes: int
    ) -> None:
        """Record the last applied source commit and commit the target transaction."""
        cur = self.c.execute(
            "UPDATE zdtp.cdc_state SET commit_lsn = %s::pg_lsn, end_lsn = %s::pg_lsn, commit_time = %s,"
            " transactions = transactions + %s, changes = changes + %s, updated_at = now()"
            " WHERE stream = %s AND commit_lsn = %s::pg_lsn",
            (
                format_lsn(commit_lsn),
                format_lsn(end_lsn),
                commit_time,
                transactions,
                changes,
                self.stream,
                format_lsn(self.commit_lsn),
            ),
        )
        if cur.rowcount != 1:
            self.rollback()
            raise TemporaryError(
                f"stream {self.stream}: zdtp.cdc_state moved under us (another writer?); not committing"
            )
        self.c.commit()
        self.commit_lsn, self.end_lsn = commit_lsn, end_lsn

    def rollback(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.rollback()
        # DDL done in the rolled-back transaction is gone: re-read table definitions.
        self.tables.clear()

    # -- tables ---------------------------------------------------------------------------
    def table(self, name: TableName) -> TargetTable | None:
        cached = self.tables.get(name)
        if cached is not None:
            return cached
        info = read_table(self.c, name)
        if info is not None:
            self.tables[name] = info
        return info

    def create_table(
        self, name: TableName, columns: list[tuple[str, str, bool]], pk: tuple[str, ...]
    ) -> None:
        """Create a missing target table (columns: name, type, not null) with the source's PK."""
        defs = [f"{ident(n)} {t}{' NOT NULL' if nn else ''}" for n, t, nn in columns]
        defs.append(f"PRIMARY KEY ({', '.join(ident(k) for k in pk)})")
        self.c.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(name.schema_)}")
        self.c.execute(f"CREATE TABLE IF NOT EXISTS {name.qualified} ({', '.join(defs)})")
        self.tables.pop(name, None)

    def add_column(self, name: TableName, column: str, type_sql: str) -> None:
        log.warning("target %s: adding column %s %s (added on the source)", name, column, type_sql)
        self.c.execute(f"ALTER TABLE {name.qualified} ADD COLUMN IF NOT EXISTS {ident(column)} {type_sql}")
        self.tables.pop(name, None)

    def shape(self, relation: Relation, target: TableName, key_names: tuple[str, ...]) -> Shape:
        info = self.table(target)
        assert info is not None
        names = [c.name for c in relation.columns]
        key_indexes = tuple(names.index(k) for k in key_names)
        self._stage_seq += 1
        stage = f"pg_temp.zdtp_stage_{self._stage_seq}"
        cols = ", ".join(ident(n) for n in names)
        keys_match = " AND ".join(f"t.{ident(k)} = s.{ident(k)}" for k in key_names)
        non_key = [n for n in names if n not in key_names]
        if non_key:
            on_conflict = "DO UPDATE SET " + ", ".join(f"{ident(n)} = EXCLUDED.{ident(n)}" for n in non_key)
        else:
            on_conflict = "DO NOTHING"
        partial_sets = ", ".join(
            f"{ident(n)} = CASE WHEN {i} = ANY(s._keep) THEN t.{ident(n)} ELSE s.{ident(n)} END"
            for i, n in enumerate(names)
            if n not in key_names
        )
        stage_cols = ", ".join(f"{ident(n)} {info.columns[n]}" for n in names)
        self.c.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage.removeprefix('pg_temp.')} "
            f'(_op "char", _keep int[], {stage_cols}) ON COMMIT DELETE ROWS'
        )
        return Shape(
            relation=relation,
            target=target,
            key_indexes=key_indexes,
            stage=stage,
            sql_delete=f"DELETE FROM {target.qualified} t USING {stage} s WHERE s._op = 'D' AND {keys_match}",
            sql_upsert=(
                f"INSERT INTO {target.qualified} ({cols}) SELECT {cols} FROM {stage} WHERE _op = 'U'"
                f" ON CONFLICT ({', '.join(ident(k) for k in key_names)}) {on_conflict}"
            ),
            sql_copy_direct=f"COPY {target.qualified} ({cols}) FROM STDIN",
            sql_partial=(
                f"UPDATE {target.qualified} t SET {partial_sets} FROM {stage} s"
                f" WHERE s._op = 'P' AND {keys_match}"
                if partial_sets
                else ""
            ),
        )

    # -- apply ----------------------------------------------------------------------------
    def apply(self, batch: Batch, shapes: dict[int, Shape]) -> int:
        """Write the batch into the open transaction (no commit); return entries written."""
        written = 0
        for oid, tb in batch.tables.items():
            if not tb.entries:
                continue
            shape = shapes[oid]
            data, direct, n_del, n_up, n_part = stage_rows(tb, direct_new=True)
            with self.c.cursor() as cur:
                if direct and not self._copy_direct(cur, shape, direct):
                    # Some "new" key exists on the target after all (it was loaded outside this
                    # stream): take the upsert path for those rows too.
                    data += b"".join([b"U\t\\N\t" + row for row in direct])
                    direct = []
                n_staged_up = n_up - len(direct)
                if not data:
                    written += n_up
                    continue
                if shape.used_in_txn:
                    cur.execute(f"TRUNCATE {shape.stage}")
                shape.used_in_txn = True
                with cur.copy(f"COPY {shape.stage} FROM STDIN") as cp:
                    cp.write(data)
                if n_del:
                    cur.execute(shape.sql_delete)
                if n_staged_up:
                    cur.execute(shape.sql_upsert)
                if n_part and shape.sql_partial:
                    cur.execute(shape.sql_partial)
            written += n_del + n_up + n_part
        batch.clear()
        return written

    def _copy_direct(self, cur: psycopg.Cursor, shape: Shape, rows: list[bytes]) -> bool:
        """COPY brand-new rows straight into the target under a savepoint; False on a key clash."""
        # Explicit SAVEPOINT, not conn.transaction(): outside an open transaction that would BEGIN
        # and COMMIT on its own, i.e. commit these rows without the batch's state row.
        cur.execute("SAVEPOINT zdtp_direct")
        try:
            with cur.copy(shape.sql_copy_direct) as cp:
                cp.write(b"".join(rows))
        except psycopg.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT zdtp_direct")
            log.info("target %s: inserted keys already present; upserting them instead", shape.target)
            return False
        cur.execute("RELEASE SAVEPOINT zdtp_direct")
        return True

    def truncate(self, names: list[TableName]) -> None:
        self.c.execute(f"TRUNCATE {', '.join(n.qualified for n in names)}")

    def move_row(self, shape: Shape, old_key: tuple[Value, ...], new: list[Value]) -> None:
        """Apply an update that changed the key and kept TOASTed columns: read them from the old row."""
        names = [c.name for c in shape.relation.columns]
        key_names = [names[i] for i in shape.key_indexes]
        where = " AND ".join(f"{ident(k)} = %s" for k in key_names)
        row = self.c.execute(
            f"SELECT {', '.join(ident(n) + '::text' for n in names)} FROM {shape.target.qualified}"
            f" WHERE {where}",
            [_text(v) for v in old_key],
        ).fetchone()
        if row is None:
            raise DataError(
                f"target {shape.target}: row to move is missing (key {old_key!r});"
                " the target diverged from the source"
            )
        merged = [
            (None if old is None else old.encode()) if v is UNCHANGED else v
            for v, old in zip(new, row, strict=True)
        ]
        self.c.execute(f"DELETE FROM {shape.target.qualified} WHERE {where}", [_text(v) for v in old_key])
        batch = Batch()
        batch.insert(shape.relation, shape.key_indexes, merged)
        self.apply(batch, {shape.relation.oid: shape})


def _text(value: Value) -> str | None:
    if value is None or value is UNCHANGED:
        return None
    assert isinstance(value, bytes)
    return value.decode()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_table(conn: psycopg.Connection, name: TableName) -> TargetTable | None:
    row = conn.execute(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
        (name.schema_, name.name),
    ).fetchone()
    if row is None:
        return None
    oid = row[0]
    cols = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (oid,),
    ).fetchall()
    pk = conn.execute(
        PK_SQL,
        (oid,),
    ).fetchall()
    return TargetTable(name=name, columns={c[0]: c[1] for c in cols}, pk=tuple(r[0] for r in pk))
