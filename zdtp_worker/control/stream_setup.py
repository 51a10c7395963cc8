"""CDC set-up on the source: pre-flight checks, publication and logical slot.

Checks run on an ordinary psycopg 3 session before anything is created or applied, so bad
input fails fast with a clear message and exit code:

- ``wal_level`` must be ``logical`` (78),
- the role must have REPLICATION (or be superuser) (78),
- every spec table must exist (78), not be subject to row-level security for the role (65) and
  have a usable replica identity (65, with the fix; see :mod:`.replica_identity`).

Creating the publication (:mod:`.publication`: ``publish_via_partition_root``, membership read
right) and the slot (only ``zdtp_*`` names, see :mod:`.slot_guard`) is idempotent. Airflow runs
:func:`prepare_stream` before a ``full+incremental`` copy (so every change after that point is
retained); the CDC worker runs the same steps at start.
"""

from __future__ import annotations

import logging

import psycopg

from zdtp_worker.contract.errors import ConfigError, DataError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.control import publication as _publication
from zdtp_worker.control import replica_identity, slot_guard, source_check
from zdtp_worker.control.catalog import TableDef, read_table
from zdtp_worker.control.session import connect

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


def check_source(
    conn: psycopg.Connection,
    tables: list[TableName],
    *,
    set_replica_identity: bool = False,
    handoff: bool = False,
) -> dict[TableName, TableDef]:
    """All pre-flight checks; returns the tables' descriptions. Raises before anything is changed.

    With ``set_replica_identity`` a table whose only problem is a missing ``REPLICA IDENTITY
    USING INDEX`` passes (:func:`prepare_source` then sets it). ``handoff``: a copy under its own
    snapshots comes first (full+incremental), so keyless tables are refused as well.
    """
    check_wal_level(conn)
    check_replication_privilege(conn)
    found: dict[TableName, TableDef] = {}
    for name in tables:
        info = read_table(conn, name)
        if info is None:
            raise ConfigError(f"source table {name} does not exist")
        found[name] = info
    check_row_security(conn, found)
    check_stream_types(conn, found)
    replica_identity.check(conn, tables, set_replica_identity=set_replica_identity, handoff=handoff)
    return found


def check_row_security(conn: psycopg.Connection, tables: dict[TableName, TableDef]) -> None:
    """DataError when row-level security applies to the source role on a streamed table: the
    decoded changes are complete, but the copy and the stream's re-reads of rows (refetch of
    unchanged TOAST values, mode incremental's initial copy) would see only what its policies
    show — a target silently missing rows."""
    limited = [
        str(name)
        for name, info in tables.items()
        if conn.execute("SELECT row_security_active(%s::oid)", (info.oid,)).fetchone()[0]
    ]
    if limited:
        raise DataError(
            f"source table(s) {', '.join(limited)} have row-level security that applies to the source role:"
            " the copy and the stream's re-reads would see only the rows its policies show."
            " Fix: connect as the tables' owner or a role with BYPASSRLS (ALTER ROLE ... BYPASSRLS)"
        )


def check_stream_types(conn: psycopg.Connection, tables: dict[TableName, TableDef]) -> None:
    """DataError for columns the stream cannot carry exactly (:func:`source_check.stream_problems`:
    xml, whose decoded form drops XML declarations; large-object references)."""
    rows = conn.execute(
        "SELECT oid, relkind::text FROM pg_class WHERE oid = ANY(%s::oid[])",
        ([t.oid for t in tables.values()],),
    ).fetchall()
    kinds = {int(oid): kind for oid, kind in rows}
    problems = source_check.stream_problems(
        conn,
        [
            (str(name), info.oid, name.qualified if kinds.get(info.oid) == "p" else f"ONLY {name.qualified}")
            for name, info in tables.items()
        ],
    )
    if problems:
        raise DataError("; ".join(problems))


def stream_keys(
    conn: psycopg.Connection, tables: list[TableName], *, set_replica_identity: bool = False
) -> dict[TableName, tuple[str, ...]]:
    """The key each table's changes are applied by (``()``: whole-row match), fixing identities
    first when opted in. Call after :func:`check_source`."""
    checks = replica_identity.inspect(conn, tables)
    if set_replica_identity and replica_identity.apply_fixes(conn, checks):
        checks = replica_identity.inspect(conn, tables)
    message = replica_identity.refusal(checks)
    if message:
        raise DataError(message)
    return {t: c.key for t, c in checks.items()}


def ensure_publication(conn: psycopg.Connection, name: str, tables: list[TableName]) -> None:
    """Create zdtp's publication (via partition roots) or add what it lacks; check someone else's."""
    _publication.ensure(conn, name, tables)


def slot_info(conn: psycopg.Connection, slot: str) -> tuple[str, str, int | None] | None:
    """(database, plugin, active pid) of an existing slot, else ``None``."""
    state = slot_guard.read_slot(conn, slot)
    return None if state is None else (state.database or "", state.plugin or "", state.active_pid)


def ensure_slot(conn: psycopg.Connection, slot: str) -> bool:
    """Create the logical slot with pgoutput if missing; ``True`` when created now.

    Only slots in zdtp's namespace are created. An existing slot is never replaced here: whether
    it can still serve the stream is :func:`slot_guard.check_resume`'s call.
    """
    slot_guard.check_namespace(slot=slot)
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
    """Drop the slot if it exists and is zdtp's (never anyone else's)."""
    slot_guard.drop_own_slot(conn, slot)


def reset_stream_state(target_dsn: str, stream: str) -> bool:
    """Forget the stream's applied LSN on the target: a copy is about to redefine its content.

    ``full+incremental`` runs call this (through :func:`prepare_stream`) after the slot exists
    and before the copy, so the stream that follows starts from the slot, whatever an earlier
    stream had applied (and a gap left by a lost slot is healed by the copy).
    """
    conn = connect(target_dsn, role="target")
    try:
        if conn.execute("SELECT to_regclass('zdtp.cdc_state')").fetchone() == (None,):
            return False
        cur = conn.execute("DELETE FROM zdtp.cdc_state WHERE stream = %s", (stream,))
        if cur.rowcount:
            log.info("stream %s: applied position on the target reset for the new copy", stream)
        return bool(cur.rowcount)
    finally:
        conn.close()


def prepare_stream(
    *,
    source_dsn: str,
    tables: list[TableName],
    slot: str,
    publication: str,
    set_replica_identity: bool = False,
    restart_on_target: str | None = None,
    handoff: bool = False,
) -> None:
    """Check the source for CDC, then create the publication and slot if missing (idempotent).

    ``handoff``: a copy follows (full+incremental), so tables the hand-off cannot converge on
    (keyless ones) are refused too.

    Every check runs before anything is created. With ``restart_on_target`` (the target DSN of a
    ``full+incremental`` run, whose copy follows) an invalidated zdtp slot is replaced and the
    stream's applied position on that target is reset: the copy makes the target whole again.
    Without it (``incremental``), a lost slot stays an error for the worker to report.
    """
    conn = connect(source_dsn, role="source")
    try:
        check_source(conn, tables, set_replica_identity=set_replica_identity, handoff=handoff)
        stream_keys(conn, tables, set_replica_identity=set_replica_identity)
        slot_guard.check_namespace(slot=slot)
        ensure_publication(conn, publication, tables)
        if restart_on_target is not None:
            state = slot_guard.read_slot(conn, slot)
            if state is not None and state.invalidated:
                log.warning("replication slot %s was invalidated: replacing it before the copy", slot)
                slot_guard.drop_own_slot(conn, slot)
        ensure_slot(conn, slot)
        slot_guard.warn_unlimited_retention(conn, slot=slot)
    finally:
        conn.close()
    if restart_on_target is not None:
        reset_stream_state(restart_on_target, slot)
