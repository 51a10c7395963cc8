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

_REL = """
SELECT c.oid, c.relkind::text AS relkind, c.relpersistence::text AS persistence, n.nspname, c.relname,
       c.relreplident::text AS replident,
       (SELECT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
         WHERE i.indrelid = c.oid AND i.indisreplident) AS replident_index,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partkey,
       c.reloptions, (SELECT t.reloptions FROM pg_class t WHERE t.oid = c.reltoastrelid) AS toast_options,
       (SELECT quote_ident(amname) FROM pg_am WHERE oid = c.relam AND amname <> 'heap') AS access_method,
       NULLIF(c.reloftype, 0) AS of_type,
       CASE WHEN c.reloftype <> 0 THEN format_type(c.reloftype, NULL) END AS of_type_sql
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1
"""
_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type_sql, a.atttypid AS type_oid, a.attnotnull,
       a.attidentity::text AS identity, a.attgenerated::text AS generated,
       CASE WHEN a.atthasdef THEN pg_get_expr(d.adbin, d.adrelid) END AS expr,
       CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN
            (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname)
             FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
             WHERE co.oid = a.attcollation) END AS collation,
       CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage::text END AS storage,
       a.attcompression::text AS compression,
       -- PostgreSQL 18 names NOT NULL constraints (15 has none in pg_constraint: NULL)
       (SELECT k.conname FROM pg_constraint k
         WHERE k.conrelid = a.attrelid AND k.contype = 'n' AND k.conkey[1] = a.attnum) AS not_null_name
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""
# pg_get_constraintdef() leaves out a key's index storage parameters (pg_dump adds them itself):
# index_options carries them for PRIMARY KEY / UNIQUE (an EXCLUDE's definition has them already).
_CONSTRAINTS = """
SELECT k.conname, k.contype::text AS kind, pg_get_constraintdef(k.oid) AS def, k.convalidated,
       CASE WHEN k.contype IN ('p', 'u') THEN ic.reloptions END AS index_options
FROM pg_constraint k LEFT JOIN pg_class ic ON ic.oid = k.conindid
WHERE k.conrelid = $1 AND k.contype IN ('p', 'u', 'c', 'x') ORDER BY k.conname
"""
# PostgreSQL 18: NOT NULL constraints added NOT VALID (attnotnull is true for them too, so the
# column is created NOT NULL); 15 has no contype 'n' and finds none.
_INVALID_NOT_NULL = """
SELECT con.conname, a.attname FROM pg_constraint con
JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
WHERE con.conrelid = $1 AND con.contype = 'n' AND NOT con.convalidated ORDER BY a.attnum
"""
_UNIQUE_INDEXES = """
SELECT ic.relname, pg_get_indexdef(i.indexrelid) AS def,
       'CREATE UNIQUE INDEX ' || quote_ident(ic.relname) || ' ON '
         || CASE WHEN c.relkind = 'p' THEN 'ONLY ' ELSE '' END
         || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || ' ' AS prefix
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = $1)
ORDER BY ic.relname
"""
_SEQUENCES = """
WITH owned AS (
  SELECT d.objid AS seq, a.attname, d.deptype = 'i' AS identity
  FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
  WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
    AND d.refobjid = $1 AND d.deptype IN ('a', 'i')
), used AS (
  SELECT d.refobjid AS seq FROM pg_depend d JOIN pg_attrdef ad ON ad.oid = d.objid
  WHERE d.classid = 'pg_attrdef'::regclass AND d.refclassid = 'pg_class'::regclass AND ad.adrelid = $1
)
SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL) AS type_sql, s.seqstart, s.seqincrement,
       s.seqmin, s.seqmax, s.seqcache, s.seqcycle, o.attname, coalesce(o.identity, false) AS identity,
       c.relpersistence = 'u' AS unlogged
FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN owned o ON o.seq = s.seqrelid
WHERE s.seqrelid IN (SELECT seq FROM owned UNION SELECT seq FROM used)
ORDER BY n.nspname, c.relname
"""
# Functions (not built in) that the table's defaults, CHECKs, generation and partition-key
# expressions call, and those its domains' CHECKs and defaults call ($2: the domains' oids), with
# the extension each belongs to (NULL: a user function).
_FUNCTIONS = """
SELECT DISTINCT p.oid::regprocedure::text AS sig,
       (SELECT x.extname FROM pg_depend e JOIN pg_extension x ON x.oid = e.refobjid
         WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid AND e.deptype = 'e') AS extension
FROM pg_depend d JOIN pg_proc p ON p.oid = d.refobjid
WHERE d.refclassid = 'pg_proc'::regclass AND p.oid >= 16384
  AND ((d.classid = 'pg_attrdef'::regclass
         AND d.objid IN (SELECT oid FROM pg_attrdef WHERE adrelid = $1))
    OR (d.classid = 'pg_constraint'::regclass
         AND d.objid IN (SELECT oid FROM pg_constraint WHERE conrelid = $1 OR contypid = ANY($2::oid[])))
    OR (d.classid = 'pg_class'::regclass AND d.objid = $1)
    OR (d.classid = 'pg_type'::regclass AND d.objid = ANY($2::oid[])))
ORDER BY 1
"""
_PARTITIONS = """
SELECT c.oid, n.nspname, c.relname, c.relkind::text AS relkind, pg_get_expr(c.relpartbound, c.oid) AS bound,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partkey, c.reloptions
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.inhparent = $1 ORDER BY n.nspname, c.relname
"""
# A partition's own CHECKs (none of its parent's: those come with PARTITION OF), and its columns'
# defaults and NOT NULLs where they differ from the parent's ($1 partition, $2 parent).
_PARTITION_CHECKS = """
SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
WHERE conrelid = $1 AND contype = 'c' AND conislocal AND coninhcount = 0 AND convalidated ORDER BY conname
"""
_PARTITION_COLUMNS = """
SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) AS expr, pg_get_expr(pd.adbin, pd.adrelid) AS parent_expr,
       a.attnotnull AND NOT pa.attnotnull AS own_not_null
FROM pg_attribute a JOIN pg_attribute pa ON pa.attrelid = $2 AND pa.attname = a.attname
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_attrdef pd ON pd.adrelid = pa.attrelid AND pd.adnum = pa.attnum
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' AND a.attidentity = ''
ORDER BY a.attnum
"""
# Unique indexes of a partition that are not partitions of a parent's index.
_PARTITION_INDEXES = """
SELECT ic.relname, pg_get_indexdef(i.indexrelid) AS def,
       'CREATE UNIQUE INDEX ' || quote_ident(ic.relname) || ' ON '
         || CASE WHEN c.relkind = 'p' THEN 'ONLY ' ELSE '' END
         || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || ' ' AS prefix
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid
  AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)
ORDER BY ic.relname
"""
_TYPE = """
SELECT t.oid, n.nspname, t.typname, t.typtype::text AS typtype, t.typelem, t.typlen, t.typbasetype,
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END AS base_sql,
       t.typnotnull, pg_get_expr(t.typdefaultbin, 0) AS typdefault, t.typrelid,
       -- a domain's own collation (CREATE DOMAIN ... COLLATE): its columns' attcollation equals it,
       -- so only the domain carries it
       CASE WHEN t.typtype = 'd' AND t.typcollation <> 0
             AND t.typcollation <> (SELECT b.typcollation FROM pg_type b WHERE b.oid = t.typbasetype)
            THEN (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname)
                  FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
                  WHERE co.oid = t.typcollation) END AS collation,
       (SELECT r.rngtypid FROM pg_range r WHERE r.rngmultitypid = t.oid) AS multirange_of,
       (SELECT relkind::text FROM pg_class WHERE oid = t.typrelid) AS relkind,
       (SELECT e.extname FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
         WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e') AS extension
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = $1
"""
_ENUM = "SELECT enumlabel FROM pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder"
_DOMAIN_CHECKS = (
    "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint"
    " WHERE contypid = $1 AND contype = 'c' ORDER BY conname"
)
_ATTRS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type_sql, a.atttypid,
       CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN
            (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname)
             FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
             WHERE co.oid = a.attcollation) END AS collation
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""
_RANGE = """
SELECT r.rngsubtype, format_type(r.rngsubtype, NULL) AS sub_sql, r.rngcanonical::oid AS canonical,
       r.rngsubdiff::oid AS diff, r.rngsubdiff::regproc::text AS diff_name,
       CASE WHEN r.rngcollation <> 0 AND r.rngcollation <> s.typcollation THEN
            (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname)
             FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
             WHERE co.oid = r.rngcollation) END AS collation,
       CASE WHEN NOT oc.opcdefault THEN quote_ident(ocn.nspname) || '.' || quote_ident(oc.opcname) END
         AS opclass,
       quote_ident(mn.nspname) || '.' || quote_ident(m.typname) AS multirange
FROM pg_range r JOIN pg_type s ON s.oid = r.rngsubtype
JOIN pg_opclass oc ON oc.oid = r.rngsubopc JOIN pg_namespace ocn ON ocn.oid = oc.opcnamespace
LEFT JOIN pg_type m ON m.oid = r.rngmultitypid LEFT JOIN pg_namespace mn ON mn.oid = m.typnamespace
WHERE r.rngtypid = $1
"""


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
        t = await self.conn.fetchrow(_TYPE, oid)
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
            labels = tuple(r["enumlabel"] for r in await self.conn.fetch(_ENUM, oid))
            self.ordered.append(TypeShape(t["nspname"], t["typname"], "e", labels=labels))
        elif kind == "d":
            self.domains.append(oid)
            await self.visit(t["typbasetype"], where=where)
            checks = tuple((r["conname"], r["def"]) for r in await self.conn.fetch(_DOMAIN_CHECKS, oid))
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
            attrs = await self.conn.fetch(_ATTRS, t["typrelid"])
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
            rng = await self.conn.fetchrow(_RANGE, oid)
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
    for r in await conn.fetch(_PARTITIONS, oid):
        name = render_qualified(r["nspname"], r["relname"])
        if r["relkind"] not in ("r", "p"):
            problems.append(
                f"partition {name} is a foreign table (relkind {r['relkind']}); zdtp copies only local data"
            )
            continue
        children = await _partitions(conn, r["oid"], problems) if r["relkind"] == "p" else ()
        cols = await conn.fetch(_PARTITION_COLUMNS, r["oid"], oid)
        indexes = []
        for ix in await conn.fetch(_PARTITION_INDEXES, r["oid"]):
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
                checks=tuple((c["conname"], c["def"]) for c in await conn.fetch(_PARTITION_CHECKS, r["oid"])),
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
    for r in await conn.fetch(_INVALID_NOT_NULL, rel["oid"]):
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
    rel = await conn.fetchrow(_REL, oid)
    table = render_qualified(rel["nspname"], rel["relname"])
    types = _Types(conn)
    columns = []
    for c in await conn.fetch(_COLUMNS, oid):
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
        for r in await conn.fetch(_CONSTRAINTS, oid)
        if r["convalidated"]  # a NOT VALID check is no promise about existing rows
    )
    if rel["of_type"]:  # a typed table (CREATE TABLE ... OF type): its composite type is created too
        await types.visit(rel["of_type"], where=f"table {table} (OF {rel['of_type_sql']})")
    problems = list(types.problems)
    problems += await _invalid_not_null_problems(conn, rel, table)
    indexes = []
    for r in await conn.fetch(_UNIQUE_INDEXES, oid):
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
        for r in await conn.fetch(_SEQUENCES, oid)
    )
    called = await conn.fetch(_FUNCTIONS, oid, list(types.domains))
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
