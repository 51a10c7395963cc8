"""Read a :class:`~zdtp_worker.pg.shape.TableShape` from the source catalog (any :class:`.conn.Conn`:
asyncpg in the worker, psycopg 3 in ``zdtp plan``).

Runs inside the caller's transaction (the full copy's snapshot), with ``search_path`` set to
``pg_catalog`` for the duration, so ``format_type``, ``pg_get_expr`` and ``pg_get_constraintdef``
schema-qualify every user object and the text means the same on the target. User-defined types
are followed recursively (domain → base, composite → attributes, array → element, range →
subtype) and returned dependencies first.
"""

from __future__ import annotations

from typing import Any

from zdtp_worker.contract.identifiers import render_qualified, sql_ident, sql_qualified
from zdtp_worker.pg import shape_sql as sql
from zdtp_worker.pg.conn import Conn
from zdtp_worker.pg.shape import (
    ColumnShape,
    ConstraintShape,
    IndexShape,
    PartitionShape,
    SequenceShape,
    TableShape,
    TypeShape,
)

FIRST_NORMAL_OID = 16384  # objects created by initdb have smaller OIDs


class _Types:
    """Depth-first walk over user types; ``ordered`` ends up dependencies first."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.seen: set[int] = set()
        self.ordered: list[TypeShape] = []
        self.problems: list[str] = []
        self.domains: list[int] = []

    async def visit(self, oid: int, *, where: str) -> None:
        if oid < FIRST_NORMAL_OID or oid in self.seen:
            return
        self.seen.add(oid)
        t = await self.conn.fetchrow(sql.TYPE, oid)
        if t is None:
            return
        name = render_qualified(t["nspname"], t["typname"])
        if t["extension"]:
            self.ordered.append(TypeShape(t["nspname"], t["typname"], "x", extension=t["extension"]))
            return
        kind = t["typtype"]
        if t["typelem"] and t["typlen"] == -1 and kind == "b":  # an array: its element matters
            await self.visit(t["typelem"], where=where)
        elif kind == "e":
            labels = tuple(r["enumlabel"] for r in await self.conn.fetch(sql.ENUM, oid))
            self.ordered.append(TypeShape(t["nspname"], t["typname"], "e", labels=labels))
        elif kind == "d":
            self.domains.append(oid)
            await self.visit(t["typbasetype"], where=where)
            checks = tuple((r["conname"], r["def"]) for r in await self.conn.fetch(sql.DOMAIN_CHECKS, oid))
            self.ordered.append(
                TypeShape(
                    t["nspname"],
                    t["typname"],
                    "d",
                    base_sql=t["base_sql"],
                    not_null=t["typnotnull"],
                    default_sql=t["typdefault"],
                    checks=checks,
                    collation=t["collation"],
                )
            )
        elif kind == "c" and t["relkind"] == "c":
            attrs = await self.conn.fetch(sql.ATTRS, t["typrelid"])
            for a in attrs:
                await self.visit(a["atttypid"], where=where)
            self.ordered.append(
                TypeShape(
                    t["nspname"],
                    t["typname"],
                    "c",
                    attributes=tuple((a["attname"], a["type_sql"], a["collation"]) for a in attrs),
                )
            )
        elif kind == "r":
            rng = await self.conn.fetchrow(sql.RANGE, oid)
            await self.visit(rng["rngsubtype"], where=where)
            if rng["canonical"]:
                self.problems.append(f"{where}: range type {name} has a canonical function zdtp cannot copy")
            diff = rng["diff_name"] if rng["diff"] and rng["diff"] < FIRST_NORMAL_OID else None
            self.ordered.append(
                TypeShape(
                    t["nspname"],
                    t["typname"],
                    "r",
                    base_sql=rng["sub_sql"],
                    subtype_diff=diff,
                    collation=rng["collation"],
                    opclass=rng["opclass"],
                    multirange=rng["multirange"],
                )
            )
        elif kind == "m" and t["multirange_of"]:
            # A multirange comes with its range type (CREATE TYPE ... AS RANGE makes both).
            await self.visit(t["multirange_of"], where=where)
        elif kind == "c":
            self.problems.append(
                f"{where}: its type {name} is the row type of a table; zdtp cannot recreate it"
            )
        else:
            self.problems.append(
                f"{where}: type {name} is a base type defined outside any extension; create it on the target "
                "and create the table there yourself"
            )


async def _partitions(conn: Conn, oid: int, problems: list[str]) -> tuple[PartitionShape, ...]:
    out = []
    for r in await conn.fetch(sql.PARTITIONS, oid):
        name = render_qualified(r["nspname"], r["relname"])
        if r["relkind"] not in ("r", "p"):
            problems.append(
                f"partition {name} is a foreign table (relkind {r['relkind']}); zdtp copies only local data"
            )
            continue
        children = await _partitions(conn, r["oid"], problems) if r["relkind"] == "p" else ()
        cols = await conn.fetch(sql.PARTITION_COLUMNS, r["oid"], oid)
        indexes = []
        for ix in await conn.fetch(sql.PARTITION_INDEXES, r["oid"]):
            if not ix["def"].startswith(ix["prefix"]):
                problems.append(f"partition {name}: cannot read unique index {ix['relname']!r} ({ix['def']})")
                continue
            indexes.append(IndexShape(ix["relname"], ix["def"][len(ix["prefix"]) :]))
        out.append(
            PartitionShape(
                r["nspname"],
                r["relname"],
                r["bound"],
                r["partkey"],
                children,
                options=tuple(r["reloptions"] or ()),
                checks=tuple(
                    (c["conname"], c["def"]) for c in await conn.fetch(sql.PARTITION_CHECKS, r["oid"])
                ),
                defaults=tuple((c["attname"], c["expr"]) for c in cols if c["expr"] != c["parent_expr"]),
                not_null=tuple(c["attname"] for c in cols if c["own_not_null"]),
                unique_indexes=tuple(indexes),
            )
        )
    return tuple(out)


def _with_index_options(definition: str, options: list[str] | None) -> str:
    """``PRIMARY KEY (id) WITH (fillfactor = '70') DEFERRABLE``: the index parameters go before
    the deferrability clause, which is all pg_get_constraintdef() may print after the columns."""
    if not options:
        return definition
    with_sql = (
        " WITH ("
        + ", ".join(
            f"{k} = '{v.replace(chr(39), chr(39) * 2)}'" for k, _, v in (o.partition("=") for o in options)
        )
        + ")"
    )
    head, sep, tail = definition.partition(" DEFERRABLE")
    return head + with_sql + sep + tail


async def _invalid_not_null_problems(conn: Conn, rel: Any, table: str) -> list[str]:
    """A NOT NULL constraint added NOT VALID over rows that hold NULL: the target's column is
    created NOT NULL (attnotnull says so), and COPY would fail on the first such row, after other
    rows were written. One scan per such column (they are rare); without NULLs the copy is exact."""
    out = []
    relation = sql_qualified(rel["nspname"], rel["relname"])
    scan = relation if rel["relkind"] == "p" else f"ONLY {relation}"
    for r in await conn.fetch(sql.INVALID_NOT_NULL, rel["oid"]):
        column = sql_ident(r["attname"])
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {scan} WHERE {column} IS NULL)"):
            out.append(
                f"table {table}: column {r['attname']!r} has NOT NULL constraint {r['conname']!r} added "
                "NOT VALID and rows holding NULL there; the target's column would be NOT NULL and the copy "
                f"would fail. Fix: update those rows and ALTER TABLE {relation} VALIDATE CONSTRAINT "
                f"{sql_ident(r['conname'])} on the source, or drop the constraint, or create the target "
                "table yourself with the column nullable"
            )
    return out


async def read_shape(conn: Conn, oid: int) -> TableShape:
    """The shape of relation ``oid`` (a plain or partitioned table), read in the caller's snapshot."""
    old_path = await conn.fetchval("SELECT current_setting('search_path')")
    await conn.execute("SELECT set_config('search_path', 'pg_catalog', false)")
    try:
        return await _read(conn, oid)
    finally:
        await conn.execute("SELECT set_config('search_path', $1, false)", old_path)


async def _read(conn: Conn, oid: int) -> TableShape:
    rel = await conn.fetchrow(sql.REL, oid)
    table = render_qualified(rel["nspname"], rel["relname"])
    types = _Types(conn)
    columns = []
    for c in await conn.fetch(sql.COLUMNS, oid):
        await types.visit(c["type_oid"], where=f"table {table} column {c['attname']!r}")
        generated = c["generated"] or ""
        columns.append(
            ColumnShape(
                name=c["attname"],
                type_sql=c["type_sql"],
                not_null=c["attnotnull"],
                default_sql=None if generated else c["expr"],
                generated=generated,
                generation_sql=c["expr"] if generated else None,
                identity=c["identity"] or "",
                collation=c["collation"],
                storage=c["storage"],
                compression=c["compression"] or "",
                not_null_name=c["not_null_name"] if c["attnotnull"] else None,
            )
        )
    constraints = tuple(
        ConstraintShape(r["conname"], r["kind"], _with_index_options(r["def"], r["index_options"]))
        for r in await conn.fetch(sql.CONSTRAINTS, oid)
        if r["convalidated"]  # a NOT VALID check is no promise about existing rows
    )
    if rel["of_type"]:  # a typed table (CREATE TABLE ... OF type): its composite type is created too
        await types.visit(rel["of_type"], where=f"table {table} (OF {rel['of_type_sql']})")
    problems = list(types.problems)
    problems += await _invalid_not_null_problems(conn, rel, table)
    indexes = []
    for r in await conn.fetch(sql.UNIQUE_INDEXES, oid):
        if not r["def"].startswith(r["prefix"]):
            problems.append(f"table {table}: cannot read unique index {r['relname']!r} ({r['def']})")
            continue
        indexes.append(IndexShape(r["relname"], r["def"][len(r["prefix"]) :]))
    sequences = tuple(
        SequenceShape(
            schema=r["nspname"],
            name=r["relname"],
            type_sql=r["type_sql"],
            start=r["seqstart"],
            increment=r["seqincrement"],
            min_value=r["seqmin"],
            max_value=r["seqmax"],
            cache=r["seqcache"],
            cycle=r["seqcycle"],
            column=r["attname"],
            identity=r["identity"],
            unlogged=r["unlogged"],
        )
        for r in await conn.fetch(sql.SEQUENCES, oid)
    )
    called = await conn.fetch(sql.FUNCTIONS, oid, list(types.domains))
    functions = tuple(r["sig"] for r in called if r["extension"] is None)
    extension_functions = tuple((r["sig"], r["extension"]) for r in called if r["extension"] is not None)
    partitions = await _partitions(conn, oid, problems) if rel["relkind"] == "p" else ()
    return TableShape(
        schema=rel["nspname"],
        name=rel["relname"],
        relkind=rel["relkind"],
        unlogged=rel["persistence"] == "u",
        replica_identity=rel["replident"],
        replica_identity_index=rel["replident_index"],
        columns=tuple(columns),
        constraints=constraints,
        unique_indexes=tuple(indexes),
        sequences=sequences,
        types=tuple(types.ordered),
        functions=functions,
        extension_functions=extension_functions,
        partkey_sql=rel["partkey"],
        partitions=partitions,
        options=tuple(rel["reloptions"] or ()),
        toast_options=tuple(rel["toast_options"] or ()),
        access_method=rel["access_method"],
        of_type_sql=rel["of_type_sql"],
        problems=tuple(problems),
    )
