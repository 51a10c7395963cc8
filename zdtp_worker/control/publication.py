"""The stream's publication: created with ``publish_via_partition_root``, membership checked right.

Two PostgreSQL facts shape this module:

- A partitioned table in a publication publishes under its **leaf** names unless the publication
  has ``publish_via_partition_root = true``; the stream maps changes by table name, so leaf-named
  changes of a parent the sync lists would be dropped. zdtp's publications always set it.
- ``pg_publication_tables`` lists the leaves (without that option), so a membership check on the
  parent's name there fails and ``ALTER PUBLICATION … ADD TABLE parent`` then errors with
  "already member of publication": the worker could never restart. Membership is therefore read
  from ``pg_publication_rel`` (direct members), ``pg_publication_namespace`` (``FOR TABLES IN
  SCHEMA``, PG 15+), ``puballtables`` and the table's partition ancestors.

Ownership: zdtp creates and alters only publications named ``zdtp_*``. A publication the sync
names outside that namespace belongs to someone else: it is used as it is when it fits (members,
actions, ``publish_via_partition_root`` for partitioned tables), else refused with the statements
that would fix it; zdtp never changes it.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import psycopg

from zdtp_worker.contract.errors import ConfigError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.pg.quoting import ident

log = logging.getLogger(__name__)

PREFIX = "zdtp_"
_ACTIONS = ("insert", "update", "delete", "truncate")

_PUB_SQL = """
SELECT p.oid, p.puballtables, p.pubviaroot, p.pubinsert, p.pubupdate, p.pubdelete, p.pubtruncate
FROM pg_publication p WHERE p.pubname = %s
"""
# For each table: its oid, kind, and whether the publication covers it (directly, via an
# ancestor, its schema, or ALL TABLES).
_MEMBERS_SQL = """
SELECT t.schema, t.name, c.oid, c.relkind::text,
       EXISTS (SELECT 1 FROM pg_publication_rel r WHERE r.prpubid = %(pub)s AND r.prrelid = c.oid) AS direct,
       EXISTS (SELECT 1 FROM pg_publication_rel r WHERE r.prpubid = %(pub)s
               AND r.prrelid IN (SELECT relid FROM pg_partition_ancestors(c.oid) WHERE relid <> c.oid))
         AS via_ancestor,
       {schema_member} AS via_schema,
       {partial} AS partial
FROM unnest(%(schemas)s::text[], %(names)s::text[]) AS t(schema, name)
JOIN pg_namespace n ON n.nspname = t.schema
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.name AND c.relkind IN ('r', 'p')
"""
# PG 15+: the entry (its own or an ancestor's) publishes only some rows or columns.
_PARTIAL = """EXISTS (SELECT 1 FROM pg_publication_rel r WHERE r.prpubid = %(pub)s
               AND (r.prrelid = c.oid OR r.prrelid IN (SELECT relid FROM pg_partition_ancestors(c.oid)))
               AND (r.prqual IS NOT NULL OR r.prattrs IS NOT NULL))"""
_SCHEMA_MEMBER = (
    "EXISTS (SELECT 1 FROM pg_publication_namespace pn WHERE pn.pnpubid = %(pub)s AND pn.pnnspid = n.oid)"
)


@dataclass(frozen=True)
class Membership:
    table: TableName
    partitioned: bool
    direct: bool
    covered: bool  # direct, via an ancestor, its schema, or ALL TABLES
    # published with a row filter or a column list (and not also whole, through its schema)
    partial: bool = False


@dataclass(frozen=True)
class PublicationState:
    name: str
    exists: bool
    all_tables: bool = False
    via_root: bool = False
    actions: tuple[str, ...] = ()
    members: tuple[Membership, ...] = ()

    def missing(self) -> list[TableName]:
        return [m.table for m in self.members if not m.covered]

    def partial(self) -> list[TableName]:
        return [m.table for m in self.members if m.partial]

    @property
    def needs_via_root(self) -> bool:
        return any(m.partitioned for m in self.members) and not self.via_root


def is_own(name: str) -> bool:
    return name.startswith(PREFIX)


def read_state(conn: psycopg.Connection, name: str, tables: list[TableName]) -> PublicationState:
    row = conn.execute(_PUB_SQL, (name,)).fetchone()
    if row is None:
        return PublicationState(name=name, exists=False)
    oid, all_tables, via_root = int(row[0]), bool(row[1]), bool(row[2])
    actions = tuple(a for a, on in zip(_ACTIONS, row[3:7], strict=True) if on)
    has_schemas = conn.info.server_version >= 150000
    sql = _MEMBERS_SQL.format(
        schema_member=_SCHEMA_MEMBER if has_schemas else "false",
        partial=_PARTIAL if has_schemas else "false",
    )
    rows = conn.execute(
        sql, {"pub": oid, "schemas": [t.schema_ for t in tables], "names": [t.name for t in tables]}
    ).fetchall()
    by_name = {(r[0], r[1]): r for r in rows}
    members = []
    for t in tables:
        r = by_name.get((t.schema_, t.name))
        if r is None:
            continue  # a missing table is reported by the pre-flight check
        members.append(
            Membership(
                table=t,
                partitioned=r[3] == "p",
                direct=bool(r[4]),
                covered=all_tables or bool(r[4]) or bool(r[5]) or bool(r[6]),
                partial=bool(r[7]) and not (all_tables or r[6]),
            )
        )
    return PublicationState(
        name=name,
        exists=True,
        all_tables=all_tables,
        via_root=via_root,
        actions=actions,
        members=tuple(members),
    )


def _plain_list(tables: list[TableName]) -> str:
    return ", ".join(t.qualified for t in tables)


def _table_list(tables: list[TableName]) -> str:
    # ONLY: without it PostgreSQL also publishes every table that INHERITS from a listed one — tables
    # the sync did not name, whose own UPDATE/DELETE on the source then fail when they lack a
    # replica identity. (A partitioned table's partitions are published through it either way.)
    return ", ".join(f"ONLY {t.qualified}" for t in tables)


def ensure(conn: psycopg.Connection, name: str, tables: list[TableName]) -> PublicationState:
    """Make ``name`` publish ``tables`` via their partition roots (idempotent, safe to race).

    zdtp's own publication is created or completed; someone else's is only checked.
    """
    if not is_own(name):
        return check_foreign(conn, name, tables)
    state = read_state(conn, name, tables)
    if not state.exists:
        try:
            conn.execute(
                f"CREATE PUBLICATION {ident(name)} FOR TABLE {_table_list(tables)}"
                " WITH (publish_via_partition_root = true)"
            )
            log.info("created publication %s for %s", name, ", ".join(map(str, tables)))
        except psycopg.errors.DuplicateObject:
            pass  # another worker/Airflow task created it meanwhile: complete it below
        state = read_state(conn, name, tables)
    if not state.via_root:
        # A publication created by an earlier zdtp (or by the race above) without the option.
        conn.execute(f"ALTER PUBLICATION {ident(name)} SET (publish_via_partition_root = true)")
        log.info("publication %s: set publish_via_partition_root = true", name)
    missing = state.missing()
    if missing:
        with contextlib.suppress(psycopg.errors.DuplicateObject):  # added concurrently
            conn.execute(f"ALTER PUBLICATION {ident(name)} ADD TABLE {_table_list(missing)}")
        log.info("added %s to publication %s", ", ".join(map(str, missing)), name)
    lacking = [a for a in _ACTIONS if a not in state.actions]
    if lacking:
        conn.execute(f"ALTER PUBLICATION {ident(name)} SET (publish = '{', '.join(_ACTIONS)}')")
    return read_state(conn, name, tables)


def check_foreign(conn: psycopg.Connection, name: str, tables: list[TableName]) -> PublicationState:
    """Someone else's publication: use it only if it already fits; say how to fix it otherwise."""
    state = read_state(conn, name, tables)
    if not state.exists:
        raise ConfigError(
            f"publication {name} does not exist; zdtp only creates publications named {PREFIX}..."
            " (leave incremental.publication unset to let zdtp create its own)"
        )
    fixes = []
    missing = state.missing()
    if missing:
        fixes.append(f"ALTER PUBLICATION {ident(name)} ADD TABLE {_plain_list(missing)}")
    if state.needs_via_root:
        fixes.append(f"ALTER PUBLICATION {ident(name)} SET (publish_via_partition_root = true)")
    lacking = [a for a in _ACTIONS if a not in state.actions]
    if lacking:
        fixes.append(f"ALTER PUBLICATION {ident(name)} SET (publish = '{', '.join(_ACTIONS)}')")
    for table in state.partial():
        # The full copy takes every row and column; changes the filter drops would never arrive.
        fixes.append(
            f"publish all of {table.qualified}: it has a row filter (WHERE) or a column list here, so"
            f" the stream would miss changes the copy's rows need (ALTER PUBLICATION {ident(name)}"
            f" SET TABLE ... without them, or leave incremental.publication unset)"
        )
    if fixes:
        raise ConfigError(
            f"publication {name} is not zdtp's and does not fit this stream (zdtp never alters it);"
            f" fix: {'; '.join(fixes)}"
        )
    return state
