"""What a table's values need beyond its rows, checked before anything is written: the rules the
full worker's pre-flight applies (asyncpg) and ``zdtp plan`` applies (psycopg 3), from one place,
so a refusal comes at plan time and the worker can never disagree with the plan.

- **Row-level security** that applies to the role: the copy would hold only the rows its
  policies show.
- **Privileges**: a column the role may not SELECT (the COPY fails half-way), an owned sequence
  it may not read (the last step fails).
- **Large objects**: an ``oid`` column (or a domain over ``oid``, such as the ``lo`` extension's
  type) copies the *number*; the object in ``pg_largeobject`` stays behind, so the target's value
  points at nothing, or at another object. Rule: a domain over ``oid`` is refused always (it exists
  to hold large-object references); a plain ``oid`` column (or ``oid[]``) is refused when one of
  its values names a large object that exists on the source (one scan of the table, run only when
  the source has large objects at all). Other ``oid`` values (type or relation oids, counters)
  copy as numbers.
- **xml** on a target built without libxml: every non-NULL value would fail to load (and a
  stream could not apply it); there is no exact text stand-in, so the table is refused.

Each check returns messages that name the table, the column and the fix; callers raise them.
SQL takes the table's oid as the placeholder the driver wants (``$1`` / ``%s``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Columns whose value (through one domain level and one array level) is an ``oid``: name, the
# column's type as written, and whether that type is a domain (``lo``) or an array.
_OID_COLUMNS = """
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typtype = 'd', at.typcategory = 'A'
FROM pg_attribute a JOIN pg_type at ON at.oid = a.atttypid
JOIN pg_type t ON t.oid = CASE WHEN at.typelem <> 0 AND at.typlen = -1 THEN at.typelem ELSE at.oid END
WHERE a.attrelid = {p} AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
  AND (t.oid = 'oid'::regtype OR (t.typtype = 'd' AND t.typbasetype = 'oid'::regtype))
ORDER BY a.attnum
"""

# Columns holding xml (directly, as an array, or through a domain).
_XML_COLUMNS = """
SELECT a.attname::text
FROM pg_attribute a JOIN pg_type at ON at.oid = a.atttypid
JOIN pg_type t ON t.oid = CASE WHEN at.typelem <> 0 AND at.typlen = -1 THEN at.typelem ELSE at.oid END
WHERE a.attrelid = {p} AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
  AND 'xml'::regtype IN (t.oid, t.typbasetype)
ORDER BY a.attnum
"""

HAS_LARGE_OBJECTS = "SELECT EXISTS (SELECT 1 FROM pg_largeobject_metadata)"
# A probe that fails (feature_not_supported) on a server built without libxml.
XML_PROBE = "SELECT '<zdtp/>'::xml::text"

UNREADABLE_COLUMNS = """
SELECT attname::text FROM pg_attribute
WHERE attrelid = {p} AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
  AND NOT has_column_privilege(attrelid, attnum, 'SELECT')
ORDER BY attnum
"""
UNREADABLE_SEQUENCES = """
SELECT DISTINCT s.oid::regclass::text FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
WHERE d.refobjid = {p} AND d.classid = 'pg_class'::regclass
  -- CASE: has_sequence_privilege raises on anything else (the table's TOAST table depends on it too)
  AND CASE WHEN s.relkind = 'S' THEN NOT has_sequence_privilege(s.oid, 'SELECT') ELSE false END
"""
ROW_SECURITY = "SELECT row_security_active({p}::oid)"


def oid_columns_sql(p: str) -> str:
    return _OID_COLUMNS.format(p=p)


def xml_columns_sql(p: str) -> str:
    return _XML_COLUMNS.format(p=p)


def unreadable_columns_sql(p: str) -> str:
    return UNREADABLE_COLUMNS.format(p=p)


def unreadable_sequences_sql(p: str) -> str:
    return UNREADABLE_SEQUENCES.format(p=p)


def row_security_sql(p: str) -> str:
    return ROW_SECURITY.format(p=p)


@dataclass(frozen=True)
class OidColumn:
    name: str
    type_sql: str
    is_domain: bool
    is_array: bool

    def references_sql(self, from_sql: str) -> str:
        """Does any value of this column name an existing large object? (one scan)"""
        col = '"' + self.name.replace('"', '""') + '"'
        test = (
            f"{col}::oid[] && ARRAY(SELECT oid FROM pg_largeobject_metadata)"
            if self.is_array
            else f"{col}::oid IN (SELECT oid FROM pg_largeobject_metadata)"
        )
        return f"SELECT EXISTS (SELECT 1 FROM {from_sql} WHERE {test})"


def oid_columns(rows: list[Any]) -> list[OidColumn]:
    return [OidColumn(str(r[0]), str(r[1]), bool(r[2]), bool(r[3])) for r in rows]


def large_object_message(table: str, columns: list[OidColumn]) -> str:
    what = ", ".join(
        f"{c.name} ({c.type_sql}{', a domain over oid' if c.is_domain else ''})" for c in columns
    )
    return (
        f"source table {table}: column(s) {what} hold large-object references; zdtp would copy the"
        " oid numbers but not the large objects (pg_largeobject), so the target's values would point"
        " at nothing or at other objects. Fix: store the data in a bytea column, or copy the large"
        " objects yourself keeping their OIDs (pg_dump --large-objects) and exclude the table"
    )


def xml_message(table: str, columns: list[str]) -> str:
    return (
        f"source table {table}: column(s) {', '.join(columns)} have type xml, and the target server"
        " was built without libxml, so it cannot hold xml values (a text cast would change the"
        " column's type). Fix: use a target server built with libxml (--with-libxml), or exclude"
        " the table"
    )


def row_security_message(table: str) -> str:
    return (
        f"source table {table} has row-level security and the source role is subject to it: "
        "a copy would hold only the rows its policies show; connect as the table's owner or a "
        "role with BYPASSRLS (ALTER ROLE ... BYPASSRLS)"
    )


def unreadable_message(table: str, columns: list[str], sequences: list[str]) -> str:
    what = []
    if columns:
        what.append(f"column(s) {', '.join(columns)}")
    if sequences:
        what.append(f"its sequence(s) {', '.join(sequences)}")
    grant = "TABLE " + table if columns else "SEQUENCE " + sequences[0]
    return (
        f"source table {table}: the source role may not read {' and '.join(what)};"
        f" fix: GRANT SELECT ON {grant}"
        " TO <the role zdtp connects as> (or connect as a role that can read the whole table)"
    )


def source_problems(conn: Any, oid: int, table: str, from_sql: str) -> list[str]:
    """Every problem of one source table (psycopg 3 connection, autocommit): the plan's check.
    ``from_sql`` is what to scan (``ONLY`` the table unless partitioned)."""
    problems = []
    if conn.execute(row_security_sql("%s"), (oid,)).fetchone()[0]:
        problems.append(row_security_message(table))
    columns = [r[0] for r in conn.execute(unreadable_columns_sql("%s"), (oid,)).fetchall()]
    sequences = [r[0] for r in conn.execute(unreadable_sequences_sql("%s"), (oid,)).fetchall()]
    if columns or sequences:
        problems.append(unreadable_message(table, columns, sequences))
    candidates = oid_columns(conn.execute(oid_columns_sql("%s"), (oid,)).fetchall())
    refs = [c for c in candidates if c.is_domain]
    plain = [c for c in candidates if not c.is_domain and c.name not in columns]
    if plain and conn.execute(HAS_LARGE_OBJECTS).fetchone()[0]:
        refs += [c for c in plain if conn.execute(c.references_sql(from_sql)).fetchone()[0]]
    if refs:
        problems.append(large_object_message(table, refs))
    return problems


def target_holds_xml(conn: Any) -> bool:
    """Can the target (psycopg 3, autocommit) parse xml values?"""
    import psycopg

    try:
        conn.execute(XML_PROBE)
    except psycopg.errors.FeatureNotSupported:
        return False
    return True


def xml_columns(conn: Any, oid: int) -> list[str]:
    return [r[0] for r in conn.execute(xml_columns_sql("%s"), (oid,)).fetchall()]


def stream_xml_message(table: str, columns: list[str]) -> str:
    return (
        f"source table {table}: column(s) {', '.join(columns)} have type xml; logical decoding sends"
        " xml values in their output form, which drops the XML declaration a value was stored with"
        ' (<?xml version="1.0"?>), so the stream would change values. Fix: mode full (it reads the'
        " stored text), or change the column to text on the source, or exclude the table"
    )


def stream_problems(conn: Any, tables: list[tuple[str, int, str]]) -> list[str]:
    """What a CDC mode cannot stream exactly, for (table, oid, from_sql) on a psycopg 3 source
    session: xml columns, large-object references (their objects are never in the WAL stream)."""
    problems = []
    for table, oid, from_sql in tables:
        columns = xml_columns(conn, oid)
        if columns:
            problems.append(stream_xml_message(table, columns))
        candidates = oid_columns(conn.execute(oid_columns_sql("%s"), (oid,)).fetchall())
        refs = [c for c in candidates if c.is_domain]
        plain = [c for c in candidates if not c.is_domain]
        if plain and conn.execute(HAS_LARGE_OBJECTS).fetchone()[0]:
            refs += [c for c in plain if conn.execute(c.references_sql(from_sql)).fetchone()[0]]
        if refs:
            problems.append(large_object_message(table, refs))
    return problems


# Roles named by the aclitem values of a table's aclitem/aclitem[] columns (grantees and grantors;
# PUBLIC is no role). The values' text form names them: each must exist on the target.
_ACL_COLUMNS = """
SELECT a.attname::text, at.typcategory = 'A'
FROM pg_attribute a JOIN pg_type at ON at.oid = a.atttypid
WHERE a.attrelid = {p} AND a.attnum > 0 AND NOT a.attisdropped
  AND 'aclitem'::regtype IN (at.oid, at.typelem)
ORDER BY a.attnum
"""


def acl_columns_sql(p: str) -> str:
    return _ACL_COLUMNS.format(p=p)


def acl_roles_sql(from_sql: str, column: str, is_array: bool) -> str:
    """The role names a column's aclitem values mention (one scan)."""
    col = '"' + column.replace('"', '""') + '"'
    # aclexplode wants a one-dimensional, non-empty array: flatten, skip empty ones.
    items = f"ARRAY(SELECT unnest({col}))" if is_array else f"ARRAY[{col}]"
    nonempty = f"cardinality({col}) > 0" if is_array else f"{col} IS NOT NULL"
    return (
        f"SELECT DISTINCT r FROM (SELECT (aclexplode({items})).* FROM {from_sql} WHERE {nonempty}) e,"
        " LATERAL (VALUES (e.grantor), (e.grantee)) v(o), LATERAL (SELECT pg_get_userbyid(v.o) AS r) n"
        " WHERE v.o <> 0 ORDER BY 1"
    )


def acl_message(table: str, column: str, roles: list[str]) -> str:
    return (
        f"source table {table}: column {column} (aclitem) names role(s) {', '.join(roles)} that do not"
        " exist on the target; its values are copied by role name. Fix: create those roles on the"
        " target (CREATE ROLE ...), or exclude the table"
    )
