"""Can CDC stream a table? Its replica identity decides, and the answer is known at plan time.

The stream applies UPDATE and DELETE by key, so every streamed table needs a key the source
publishes with each change: the primary key (``REPLICA IDENTITY DEFAULT``), a unique index on
NOT NULL columns (``REPLICA IDENTITY USING INDEX``), or ``REPLICA IDENTITY FULL`` on a table
that still has one of those (the old row is then sent whole; zdtp keys by the PK/index). A
keyless ``REPLICA IDENTITY FULL`` table streams too, by whole-row match (``key == ()``, see
:mod:`zdtp_worker.incremental.rowwise`), as PostgreSQL's own subscriber does.

A table without one must be refused **before** anything runs, not by the worker: adding it to a
publication that publishes UPDATE/DELETE would also make the source's own UPDATE/DELETE on it fail
(``cannot update table ... because it does not have a replica identity``). zdtp never alters a
table's replica identity unless the sync says so (``incremental.set_replica_identity``), and then
only to ``USING INDEX`` of an existing unique index on NOT NULL columns.

For a partitioned table the identity that matters for the source's own writes is each leaf's, so
every leaf is checked as well.

:func:`inspect` reads the catalog (one psycopg 3 session, read-only); :func:`refusal` turns the
problems into one message; :func:`apply_fixes` runs the opted-in ``ALTER TABLE`` statements.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg

from zdtp_worker.contract.errors import DataError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.pg.quoting import ident

log = logging.getLogger(__name__)

# Index columns by key order; only plain (no expression, no predicate), valid, immediate indexes
# can be a replica identity.
_INDEXES_SQL = """
SELECT ic.relname, i.indisprimary AND i.indimmediate, i.indisreplident,
       i.indisunique AND i.indimmediate AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
         AND NOT i.indisexclusion
         AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey[0:i.indnkeyatts - 1]) k(attnum)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                         WHERE NOT a.attnotnull) AS candidate,
       ARRAY(SELECT a.attname FROM unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord)
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = %s AND 0 <> ALL (i.indkey[0:i.indnkeyatts - 1])
ORDER BY NOT i.indisprimary, i.indnkeyatts, ic.relname
"""
_TEMPORAL_PK_SQL = "SELECT 1 FROM pg_index WHERE indrelid = %s AND indisprimary AND indisexclusion"
_DEFERRABLE_PK_SQL = "SELECT 1 FROM pg_index WHERE indrelid = %s AND indisprimary AND NOT indimmediate"
_TABLE_SQL = """
SELECT c.oid, c.relkind::text, c.relreplident::text, c.relpersistence::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
"""
_LEAVES_SQL = """
SELECT n.nspname, c.relname
FROM pg_partition_tree(%s::regclass) t JOIN pg_class c ON c.oid = t.relid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE t.isleaf AND t.relid <> %s::regclass ORDER BY 1, 2
"""


@dataclass(frozen=True)
class IdentityCheck:
    """What the stream would key a table by, or why it cannot stream it (with the fix)."""

    table: TableName
    identity: str  # pg_class.relreplident: d(efault) i(ndex) f(ull) n(othing)
    key: tuple[str, ...]  # columns changes are applied by; () when there is none
    problem: str | None = None  # None: streamable as is
    # A unique index on NOT NULL columns zdtp may make the replica identity (when opted in).
    fix_index: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _describe(conn: psycopg.Connection, table: TableName, oid: int, identity: str) -> IdentityCheck:
    rows = conn.execute(_INDEXES_SQL, (oid,)).fetchall()
    pk = next((tuple(r[4]) for r in rows if r[1]), ())
    replident = next(((r[0], tuple(r[4])) for r in rows if r[2]), None)
    candidates = [(r[0], tuple(r[4])) for r in rows if r[3] and not r[1]]
    where = f"source table {table}"
    if identity == "n":
        return IdentityCheck(
            table,
            identity,
            (),
            f"{where} has REPLICA IDENTITY NOTHING: the source publishes no key with UPDATE/DELETE."
            f" Fix: ALTER TABLE {table.qualified} REPLICA IDENTITY DEFAULT (with a primary key)"
            " or REPLICA IDENTITY USING INDEX <unique index on NOT NULL columns>",
        )
    if identity == "i" and replident is not None:
        return IdentityCheck(table, identity, replident[1])
    if pk and conn.execute(_TEMPORAL_PK_SQL, (oid,)).fetchone() is not None:
        # PostgreSQL 18 `PRIMARY KEY (..., p WITHOUT OVERLAPS)` is an exclusion constraint: the
        # applier's upserts cannot name it as their conflict target (ON CONFLICT refuses
        # exclusion constraints), so every insert of the stream would fail (exit 65 for good).
        return IdentityCheck(
            table,
            identity,
            (),
            f"{where} has a temporal primary key (WITHOUT OVERLAPS, an exclusion constraint): the"
            " stream applies inserts as upserts on the key, which PostgreSQL does not allow on an"
            " exclusion constraint. Fix: sync it in a separate task with mode: full",
        )
    if pk:
        return IdentityCheck(table, identity, pk)
    deferrable_pk = conn.execute(_DEFERRABLE_PK_SQL, (oid,)).fetchone() is not None
    if identity == "d" and deferrable_pk:
        # PostgreSQL does not use a DEFERRABLE primary key as replica identity: publishing the
        # table would make the source's own UPDATE/DELETE on it fail.
        return IdentityCheck(
            table,
            identity,
            (),
            f"{where} has a DEFERRABLE primary key, which PostgreSQL cannot use as replica identity:"
            " the source would publish no key with UPDATE/DELETE, and publishing it would make the"
            f" source's own UPDATE/DELETE on it fail. Fix: ALTER TABLE {table.qualified} REPLICA"
            " IDENTITY FULL (the stream then keys by the primary key), or REPLICA IDENTITY USING"
            " INDEX <a non-deferrable unique index on NOT NULL columns>",
        )
    if identity == "f":
        # Keyed by a unique index when there is one (a deferrable primary key is one too: unique
        # once each transaction commits); else by the whole row (see incremental.rowwise).
        if deferrable_pk:
            deferred = conn.execute(
                "SELECT ARRAY(SELECT a.attname FROM pg_index i CROSS JOIN LATERAL"
                " unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY k(attnum, ord)"
                " JOIN pg_attribute a ON a.attrelid = i.indrelid"
                " AND a.attnum = k.attnum WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.ord)",
                (oid,),
            ).fetchone()
            return IdentityCheck(table, identity, tuple(deferred[0]))
        return IdentityCheck(table, identity, candidates[0][1] if candidates else ())
    if candidates:
        name, cols = candidates[0]
        return IdentityCheck(
            table,
            identity,
            cols,
            f"{where} has no primary key and its replica identity is {_IDENTITY[identity]}:"
            " adding it to a publication would make the source's own UPDATE/DELETE on it fail."
            f" Fix: ALTER TABLE {table.qualified} REPLICA IDENTITY USING INDEX {ident(name)}"
            " (or set incremental.set_replica_identity: true to let zdtp do exactly that),"
            " or add a primary key",
            fix_index=name,
        )
    return IdentityCheck(
        table,
        identity,
        (),
        f"{where} has no primary key and no unique index on NOT NULL columns: CDC applies"
        " UPDATE/DELETE by key, and publishing it would make the source's own UPDATE/DELETE on it"
        f" fail. Fix: add a primary key (ALTER TABLE {table.qualified} ADD PRIMARY KEY (...)),"
        " or a unique index on NOT NULL columns and REPLICA IDENTITY USING INDEX; or sync it"
        " with mode: full only",
    )


def _unlogged(table: TableName, persistence: str) -> IdentityCheck | None:
    """An UNLOGGED table writes no WAL: none of its changes can be streamed (and PostgreSQL
    refuses to publish it)."""
    if persistence != "u":
        return None
    return IdentityCheck(
        table,
        "d",
        (),
        f"source table {table} is UNLOGGED: it writes no WAL, so none of its changes can be streamed"
        f" (PostgreSQL cannot publish it). Fix: ALTER TABLE {table.qualified} SET LOGGED, or sync it"
        " in a separate task with mode: full",
    )


_IDENTITY = {"d": "DEFAULT", "i": "USING INDEX", "f": "FULL", "n": "NOTHING"}


def inspect(conn: psycopg.Connection, tables: list[TableName]) -> dict[TableName, IdentityCheck]:
    """Check each (existing) table and, for partitioned ones, each leaf partition."""
    out: dict[TableName, IdentityCheck] = {}
    for table in tables:
        row = conn.execute(_TABLE_SQL, (table.schema_, table.name)).fetchone()
        if row is None:
            continue  # existence is reported elsewhere, with its own exit code
        oid, kind, identity = int(row[0]), row[1], row[2]
        check = _unlogged(table, row[3]) or _describe(conn, table, oid, identity)
        if check.ok and kind == "p":
            check = _check_leaves(conn, check, oid)
        out[table] = check
    return out


def _check_leaves(conn: psycopg.Connection, parent: IdentityCheck, oid: int) -> IdentityCheck:
    for schema, name in conn.execute(_LEAVES_SQL, (oid, oid)).fetchall():
        leaf = TableName(schema=schema, name=name)
        row = conn.execute(_TABLE_SQL, (schema, name)).fetchone()
        assert row is not None
        check = _unlogged(leaf, row[3]) or _describe(conn, leaf, int(row[0]), row[2])
        if not check.ok:
            return IdentityCheck(
                parent.table,
                parent.identity,
                parent.key,
                f"partition {leaf} of {parent.table}: {check.problem}",
                fix_index=check.fix_index,
            )
    return parent


def handoff_problem(check: IdentityCheck) -> str | None:
    """Why a table that streams by whole-row match cannot take the copy → stream hand-off.

    In ``full+incremental`` the stream replays the changes committed between the slot's point and
    each chunk's snapshot (docs/concepts.md); that converges only because every apply is keyed and
    idempotent. Without a key a replayed INSERT adds a second copy of its row.
    """
    if check.problem is not None or check.key:
        return None
    return (
        f"source table {check.table} has no key (REPLICA IDENTITY FULL, no primary key and no unique"
        " index on NOT NULL columns): full+incremental replays the changes committed while the copy"
        " ran, and without a key a replayed INSERT duplicates its row."
        f" Fix: add a primary key (ALTER TABLE {check.table.qualified} ADD PRIMARY KEY (...)) or a"
        " unique index on NOT NULL columns, or sync it in a separate task with mode: full"
    )


def refusal(
    checks: dict[TableName, IdentityCheck], *, set_replica_identity: bool = False, handoff: bool = False
) -> str | None:
    """One message naming every table CDC cannot stream (and each fix), or ``None``.

    ``handoff``: the stream follows a copy (``full+incremental``), so keyless tables are refused too.
    """
    problems = [
        c.problem
        for c in checks.values()
        if c.problem is not None and not (set_replica_identity and c.fix_index is not None)
    ]
    if handoff:
        problems += [p for c in checks.values() if (p := handoff_problem(c)) is not None]
    if not problems:
        return None
    return "CDC cannot stream " + f"{len(problems)} table(s): " + "; ".join(problems)


def refusal_for(
    conn: psycopg.Connection,
    tables: list[tuple[str, str]],
    *,
    set_replica_identity: bool = False,
    handoff: bool = False,
) -> str | None:
    """:func:`refusal` for (schema, name) pairs: what the planner calls for CDC modes."""
    names = [TableName(schema=schema, name=name) for schema, name in tables]
    return refusal(inspect(conn, names), set_replica_identity=set_replica_identity, handoff=handoff)


def check(
    conn: psycopg.Connection,
    tables: list[TableName],
    *,
    set_replica_identity: bool = False,
    handoff: bool = False,
) -> None:
    """Raise DataError (exit 65) when some table has no usable replica identity."""
    message = refusal(inspect(conn, tables), set_replica_identity=set_replica_identity, handoff=handoff)
    if message:
        raise DataError(message)


def apply_fixes(conn: psycopg.Connection, checks: dict[TableName, IdentityCheck]) -> list[str]:
    """Opted in: ``REPLICA IDENTITY USING INDEX`` for tables that have a suitable index only.

    Partitioned tables are left alone (the fix would be per leaf and is the DBA's call).
    """
    done = []
    for c in checks.values():
        if c.problem is None or c.fix_index is None or c.problem.startswith("partition "):
            continue
        statement = f"ALTER TABLE {c.table.qualified} REPLICA IDENTITY USING INDEX {ident(c.fix_index)}"
        conn.execute(statement)
        log.warning("source %s: %s (incremental.set_replica_identity)", c.table, statement)
        done.append(statement)
    return done
