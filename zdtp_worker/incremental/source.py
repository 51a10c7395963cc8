"""The source side of a CDC stream: pre-flight checks, publication, slot, replication connection.

Checks run on an ordinary psycopg 3 connection before the worker takes the lease or touches the
target, so bad input fails fast with a clear message and exit code and nothing is applied:

- ``wal_level`` must be ``logical`` (78),
- the role must have REPLICATION (or be superuser) (78),
- every spec table must exist (78) and have a primary key (65).

Streaming uses psycopg2's ``LogicalReplicationConnection`` (psycopg 3 has no replication API).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import psycopg
import psycopg2
import psycopg2.errors
from psycopg2.extras import REPLICATION_LOGICAL, LogicalReplicationConnection, ReplicationCursor

from zdtp_worker.contract.errors import ConfigError, DataError, TemporaryError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.incremental.pgoutput import format_lsn, parse_lsn
from zdtp_worker.incremental.target import KEEPALIVES, PK_SQL, SESSION_OPTIONS, first_line, ident

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceColumn:
    name: str
    type_sql: str
    not_null: bool


@dataclass(frozen=True)
class SourceTable:
    name: TableName
    oid: int
    columns: tuple[SourceColumn, ...]
    pk: tuple[str, ...]


def connect(dsn: str) -> psycopg.Connection:
    try:
        return psycopg.connect(
            dsn,
            autocommit=True,
            options=SESSION_OPTIONS,
            connect_timeout=10,
            application_name="zdtp-cdc",
            **KEEPALIVES,
        )
    except psycopg.OperationalError as exc:
        raise TemporaryError(f"source: cannot connect: {first_line(exc)}") from None


def check_wal_level(conn: psycopg.Connection) -> None:
    row = conn.execute("SHOW wal_level").fetchone()
    level = row[0] if row else "?"
    if level != "logical":
        raise ConfigError(
            f"source wal_level is {level!r}, logical replication needs 'logical'"
            " (set wal_level = logical and restart the source server)"
        )


def check_replication_privilege(conn: psycopg.Connection) -> None:
    row = conn.execute(
        "SELECT current_user, rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    if not row or not row[1]:
        user = row[0] if row else "?"
        raise ConfigError(
            f"source role {user!r} lacks the REPLICATION privilege (ALTER ROLE {user} REPLICATION)"
        )


def read_table(conn: psycopg.Connection, name: TableName) -> SourceTable | None:
    row = conn.execute(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
        (name.schema_, name.name),
    ).fetchone()
    if row is None:
        return None
    oid = int(row[0])
    cols = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute"
        " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (oid,),
    ).fetchall()
    pk = conn.execute(
        PK_SQL,
        (oid,),
    ).fetchall()
    return SourceTable(
        name=name,
        oid=oid,
        columns=tuple(SourceColumn(c[0], c[1], bool(c[2])) for c in cols),
        pk=tuple(r[0] for r in pk),
    )


def check_source(conn: psycopg.Connection, tables: list[TableName]) -> dict[TableName, SourceTable]:
    """All pre-flight checks; returns the tables' descriptions. Raises before anything is applied."""
    check_wal_level(conn)
    check_replication_privilege(conn)
    found: dict[TableName, SourceTable] = {}
    for name in tables:
        info = read_table(conn, name)
        if info is None:
            raise ConfigError(f"source table {name} does not exist")
        if not info.pk:
            raise DataError(f"source table {name} has no primary key; CDC applies updates and deletes by key")
        found[name] = info
    return found


def type_names(conn: psycopg.Connection, types: list[tuple[int, int]]) -> list[str]:
    """``format_type`` for (type oid, typmod) pairs as sent in a Relation message."""
    if not types:
        return []
    rows = conn.execute(
        "SELECT format_type(t.oid, t.mod) FROM unnest(%s::oid[], %s::int[]) WITH ORDINALITY AS t(oid, mod, n)"
        " ORDER BY t.n",
        ([t for t, _ in types], [m for _, m in types]),
    ).fetchall()
    return [r[0] for r in rows]


def ensure_publication(conn: psycopg.Connection, name: str, tables: list[TableName]) -> None:
    """Create the publication for the tables, or add the ones it lacks (idempotent)."""
    row = conn.execute("SELECT puballtables FROM pg_publication WHERE pubname = %s", (name,)).fetchone()
    table_list = ", ".join(t.qualified for t in tables)
    if row is None:
        try:
            conn.execute(f"CREATE PUBLICATION {ident(name)} FOR TABLE {table_list}")
            log.info("created publication %s for %s", name, ", ".join(map(str, tables)))
            return
        except psycopg.errors.DuplicateObject:
            row = (False,)
    if row[0]:
        return
    present = {
        (r[0], r[1])
        for r in conn.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (name,)
        ).fetchall()
    }
    missing = [t for t in tables if (t.schema_, t.name) not in present]
    if missing:
        conn.execute(f"ALTER PUBLICATION {ident(name)} ADD TABLE {', '.join(t.qualified for t in missing)}")
        log.info("added %s to publication %s", ", ".join(map(str, missing)), name)


def slot_info(conn: psycopg.Connection, slot: str) -> tuple[str, str, int | None] | None:
    """(database, plugin, active pid) of an existing slot, else ``None``."""
    row = conn.execute(
        "SELECT database, plugin, active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    ).fetchone()
    return (row[0], row[1], row[2]) if row else None


def ensure_slot(conn: psycopg.Connection, slot: str) -> bool:
    """Create the logical slot with pgoutput if missing; ``True`` when created now."""
    info = slot_info(conn, slot)
    dbname = conn.info.dbname
    if info is not None:
        if info[0] != dbname or info[1] != "pgoutput":
            raise ConfigError(
                f"replication slot {slot} exists for database {info[0]} with plugin {info[1]},"
                f" not {dbname}/pgoutput"
            )
        return False
    try:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    except psycopg.errors.DuplicateObject:
        return False
    log.info("created replication slot %s", slot)
    return True


def drop_slot(conn: psycopg.Connection, slot: str) -> None:
    if slot_info(conn, slot) is not None:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


def replication_connect(dsn: str) -> LogicalReplicationConnection:
    try:
        return psycopg2.connect(
            dsn,
            connection_factory=LogicalReplicationConnection,
            options=SESSION_OPTIONS,
            application_name="zdtp-cdc",
            connect_timeout=10,
            **KEEPALIVES,
        )
    except psycopg2.OperationalError as exc:
        raise TemporaryError(f"source replication connection failed: {first_line(exc)}") from None


def create_slot_exporting_snapshot(cur: ReplicationCursor, slot: str) -> tuple[int, str]:
    """Create the slot on the replication connection; return (consistent point, snapshot name).

    The snapshot stays importable (``SET TRANSACTION SNAPSHOT``) until the next command on this
    connection, so the caller copies first and only then starts replication on it.
    """
    cur.execute(f"CREATE_REPLICATION_SLOT {ident(slot)} LOGICAL pgoutput EXPORT_SNAPSHOT")
    row = cur.fetchone()
    assert row is not None
    return parse_lsn(row[1]), row[2]


def start_replication(
    cur: ReplicationCursor, *, slot: str, publication: str, start_lsn: int, wait_seconds: float = 30.0
) -> None:
    """``START_REPLICATION``; waits while a previous holder's walsender still has the slot."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            cur.start_replication(
                slot_name=slot,
                slot_type=REPLICATION_LOGICAL,
                start_lsn=format_lsn(start_lsn),
                decode=False,
                options={"proto_version": "1", "publication_names": publication},
                status_interval=1,
            )
            return
        except psycopg2.errors.ObjectInUse as exc:
            if time.monotonic() > deadline:
                raise TemporaryError(f"replication slot {slot} stays busy: {first_line(exc)}") from None
            # Same connection can retry: the failed command did not start streaming.
            time.sleep(0.5)
        except psycopg2.errors.UndefinedObject as exc:
            raise ConfigError(f"replication slot or publication missing: {first_line(exc)}") from None
