"""CDC set-up on the source: pre-flight checks, publication and logical slot.

Checks run on an ordinary psycopg 3 session before anything is created or applied, so bad
input fails fast with a clear message and exit code:

- ``wal_level`` must be ``logical`` (78),
- the role must have REPLICATION (or be superuser) (78),
- every spec table must exist (78) and have a primary key (65).

Creating the publication and the slot is idempotent. Airflow runs :func:`prepare_stream` before a
``full+incremental`` copy (so every change after that point is retained); the CDC worker runs the
same steps at start.
"""

from __future__ import annotations

import logging

import psycopg

from zdtp_worker.contract.errors import ConfigError, DataError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.control.catalog import TableDef, read_table
from zdtp_worker.control.session import connect
from zdtp_worker.pg.quoting import ident

log = logging.getLogger(__name__)


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


def check_source(conn: psycopg.Connection, tables: list[TableName]) -> dict[TableName, TableDef]:
    """All pre-flight checks; returns the tables' descriptions. Raises before anything is applied."""
    check_wal_level(conn)
    check_replication_privilege(conn)
    found: dict[TableName, TableDef] = {}
    for name in tables:
        info = read_table(conn, name)
        if info is None:
            raise ConfigError(f"source table {name} does not exist")
        if not info.pk:
            raise DataError(f"source table {name} has no primary key; CDC applies updates and deletes by key")
        found[name] = info
    return found


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


def prepare_stream(*, source_dsn: str, tables: list[TableName], slot: str, publication: str) -> None:
    """Check the source for CDC, then create the publication and slot if missing (idempotent)."""
    conn = connect(source_dsn, role="source")
    try:
        check_source(conn, tables)
        ensure_publication(conn, publication, tables)
        ensure_slot(conn, slot)
    finally:
        conn.close()
