"""The catalog queries :mod:`zdtp_worker.pg.shape_read` runs (asyncpg-style ``$n`` parameters).

Kept apart from the code that assembles a :class:`~zdtp_worker.pg.shape.TableShape` from their
rows, so each reads on its own.
"""

from __future__ import annotations

REL = """
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
COLUMNS = """
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
CONSTRAINTS = """
SELECT k.conname, k.contype::text AS kind, pg_get_constraintdef(k.oid) AS def, k.convalidated,
       CASE WHEN k.contype IN ('p', 'u') THEN ic.reloptions END AS index_options
FROM pg_constraint k LEFT JOIN pg_class ic ON ic.oid = k.conindid
WHERE k.conrelid = $1 AND k.contype IN ('p', 'u', 'c', 'x') ORDER BY k.conname
"""
# PostgreSQL 18: NOT NULL constraints added NOT VALID (attnotnull is true for them too, so the
# column is created NOT NULL); 15 has no contype 'n' and finds none.
INVALID_NOT_NULL = """
SELECT con.conname, a.attname FROM pg_constraint con
JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
WHERE con.conrelid = $1 AND con.contype = 'n' AND NOT con.convalidated ORDER BY a.attnum
"""
# Unique indexes of a table, one CREATE prefix each; {not_from} says which are not its own.
_UNIQUE_INDEX_TEMPLATE = """
SELECT ic.relname, pg_get_indexdef(i.indexrelid) AS def,
       'CREATE UNIQUE INDEX ' || quote_ident(ic.relname) || ' ON '
         || CASE WHEN c.relkind = 'p' THEN 'ONLY ' ELSE '' END
         || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || ' ' AS prefix
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND NOT EXISTS ({not_from})
ORDER BY ic.relname
"""
# Unique indexes not behind a constraint (those come with the constraint's definition).
UNIQUE_INDEXES = _UNIQUE_INDEX_TEMPLATE.format(
    not_from="SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = $1"
)
SEQUENCES = """
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
FUNCTIONS = """
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
PARTITIONS = """
SELECT c.oid, n.nspname, c.relname, c.relkind::text AS relkind, pg_get_expr(c.relpartbound, c.oid) AS bound,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partkey, c.reloptions
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.inhparent = $1 ORDER BY n.nspname, c.relname
"""
# A partition's own CHECKs (none of its parent's: those come with PARTITION OF), and its columns'
# defaults and NOT NULLs where they differ from the parent's ($1 partition, $2 parent).
PARTITION_CHECKS = """
SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
WHERE conrelid = $1 AND contype = 'c' AND conislocal AND coninhcount = 0 AND convalidated ORDER BY conname
"""
PARTITION_COLUMNS = """
SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) AS expr, pg_get_expr(pd.adbin, pd.adrelid) AS parent_expr,
       a.attnotnull AND NOT pa.attnotnull AS own_not_null
FROM pg_attribute a JOIN pg_attribute pa ON pa.attrelid = $2 AND pa.attname = a.attname
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_attrdef pd ON pd.adrelid = pa.attrelid AND pd.adnum = pa.attnum
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' AND a.attidentity = ''
ORDER BY a.attnum
"""
# Unique indexes of a partition that are not partitions of a parent's index.
PARTITION_INDEXES = _UNIQUE_INDEX_TEMPLATE.format(
    not_from="SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid"
)
TYPE = """
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
ENUM = "SELECT enumlabel FROM pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder"
DOMAIN_CHECKS = (
    "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint"
    " WHERE contypid = $1 AND contype = 'c' ORDER BY conname"
)
ATTRS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type_sql, a.atttypid,
       CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN
            (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname)
             FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
             WHERE co.oid = a.attcollation) END AS collation
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""
RANGE = """
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
