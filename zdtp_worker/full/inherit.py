"""Table inheritance (``INHERITS``, not partitioning) reproduced between the tables zdtp creates.

Each table is copied by itself (``ONLY``: a parent's rows, not its children's), so the target
holds every row once. But on the source ``SELECT … FROM parent`` also returns the children's
rows; a target of independent tables would answer the same query with fewer rows — a silent
difference for every application reading the parent. So once a table is loaded, the worker
links it to its source parents and children that exist on the target (``ALTER TABLE child
INHERIT parent``), whichever of the two is loaded last doing it. Only tables zdtp created are
changed (``zdtp.full_tables``): a target someone else created keeps the shape they gave it.

A parent or child outside the task is not created; the link is made when a later run creates it.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from zdtp_worker.contract.errors import DataError
from zdtp_worker.contract.spec import TableName, TableSpec

# Every parent (in the source's order) of the table and of each of its children.
_EDGES = """
WITH kids AS (SELECT $1::oid AS child UNION SELECT inhrelid FROM pg_inherits WHERE inhparent = $1)
SELECT pn.nspname AS parent_schema, p.relname AS parent, cn.nspname AS child_schema, c.relname AS child
FROM kids JOIN pg_inherits i ON i.inhrelid = kids.child
JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace
JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
WHERE p.relkind = 'r' AND NOT c.relispartition
ORDER BY i.inhrelid, i.inhseqno
"""
_REL = """
SELECT c.oid, c.relkind::text AS relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2
"""
_PARENTS = "SELECT inhparent FROM pg_inherits WHERE inhrelid = $1 ORDER BY inhseqno"


@dataclass(frozen=True)
class Edge:
    parent: TableName
    child: TableName


async def source_edges(src: asyncpg.Connection, oid: int) -> list[Edge]:
    """The source's inheritance links of table ``oid`` (as parent or child), in the source's order."""
    rows = await src.fetch(_EDGES, oid)
    return [
        Edge(
            TableName(schema=r["parent_schema"], name=r["parent"]),
            TableName(schema=r["child_schema"], name=r["child"]),
        )
        for r in rows
    ]


def _on_target(table: TableName, ts: TableSpec) -> TableName:
    """Where ``table`` lands: this task's table maps as its spec says; another table of the same
    source schema follows the task's schema mapping; anything else keeps its name."""
    if table == ts.source:
        return ts.target_name
    if table.schema_ == ts.source.schema_:
        return TableName(schema=ts.target_name.schema_, name=table.name)
    return table


async def _created_by_zdtp(tgt: asyncpg.Connection, table: TableName) -> bool:
    return bool(await tgt.fetchval("SELECT 1 FROM zdtp.full_tables WHERE target = $1 LIMIT 1", str(table)))


async def link(tgt: asyncpg.Connection, edges: list[Edge], ts: TableSpec) -> list[str]:
    """Give each zdtp-created child on the target the source's parents that exist there, in the
    source's order (multiple inheritance: the order decides the order of inherited columns in a
    later child, so a parent loaded late is not simply appended: the links are made again).

    Returns the links made (``child → parent``). A link PostgreSQL refuses (the target tables'
    columns or constraints do not match) is a DataError naming both tables.
    """
    made: list[str] = []
    children: dict[TableName, list[TableName]] = {}
    for edge in edges:
        children.setdefault(_on_target(edge.child, ts), []).append(_on_target(edge.parent, ts))
    if not children:
        return made
    async with tgt.transaction():
        # One lock for every link of the database: a parent and its child loaded at the same
        # time by two workers would otherwise both try to link them.
        await tgt.execute("SELECT pg_advisory_xact_lock(hashtext('zdtp:inherit'))")
        for child, parents in children.items():
            c = await tgt.fetchrow(_REL, child.schema_, child.name)
            if c is None or c["relkind"] != "r" or not await _created_by_zdtp(tgt, child):
                continue
            wanted: list[tuple[TableName, int]] = []
            for parent in parents:
                p = await tgt.fetchrow(_REL, parent.schema_, parent.name)
                if p is not None and p["relkind"] == "r":
                    wanted.append((parent, int(p["oid"])))
            current = [int(r["inhparent"]) for r in await tgt.fetch(_PARENTS, c["oid"])]
            if [oid for oid in current if oid in {o for _, o in wanted}] == [o for _, o in wanted]:
                continue
            try:
                async with tgt.transaction():
                    for parent, oid in wanted:
                        if oid in current:
                            await tgt.execute(f"ALTER TABLE {child.qualified} NO INHERIT {parent.qualified}")
                    for parent, _ in wanted:
                        await tgt.execute(f"ALTER TABLE {child.qualified} INHERIT {parent.qualified}")
                        made.append(f"{child} → {parent}")
            except asyncpg.PostgresError as exc:
                raise DataError(
                    f"target table {child} cannot inherit from {', '.join(str(p) for p, _ in wanted)} as on "
                    f"the source: {str(exc).splitlines()[0]}; make the target tables match and run again"
                ) from None
    return made
