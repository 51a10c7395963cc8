"""When a stream runs pgoutput in binary mode, and the rule that keeps it exact.

With pgoutput's ``binary`` option (PostgreSQL 14+) the walsender sends each value in its type's
send format instead of calling the text output function, and the worker writes the rows into the
target with binary COPY, so the target skips the text input functions too (timestamptz and
numeric are the expensive ones both ways). A binary value is only meaningful to a server whose
type is *the same type*, though: arrays and composites embed element type OIDs, which differ
between databases for user types (enums, domains, composites, arrays of those), and a user type's
binary form is whatever its extension defines. So a stream is binary only when, for every
streamed table:

- it has a key (keyless tables are applied by whole-row text match, :mod:`.rowwise`);
- every published column's type is built in (OID below 16384, the same in every database), a
  base, range or multirange type with send and receive functions, and so is an array's element
  type;
- the target column has exactly the source column's type (``format_type``, typmod included):
  binary input does not convert, a widened ``bigint`` target cannot read an ``int4`` field.

Anything else makes the whole stream text, as before. A binary stream that later meets something
the rule excludes — a Relation message with a new or changed column (``ALTER TABLE … ADD COLUMN``
of an enum), a value the server sent as text anyway, or a rare path that needs values as text
(completing a row from the source, an update that moves a key and keeps TOASTed values) — raises
:class:`~zdtp_worker.incremental.pgoutput.NeedsTextMode`: the stream rolls back its open target
transaction (nothing of it was committed) and restarts in text mode from the last committed
source transaction, with a log line; exactly-once is the ordinary restart argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import psycopg

from zdtp_worker.contract.spec import TableName

FIRST_NORMAL_OID = 16384  # PostgreSQL's FirstNormalObjectId: below it, OIDs fixed at initdb

# Set to False to stream in text mode whatever the types (tests compare both modes).
ALLOWED = True

_PORTABLE = (
    "({t}.oid < 16384 AND {t}.typtype IN ('b', 'r', 'm')"
    " AND {t}.typsend::oid <> 0 AND {t}.typreceive::oid <> 0)"
)
_UNPORTABLE_TYPES_SQL = f"""
SELECT t.oid::int, format_type(t.oid, NULL)
FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typelem <> 0
WHERE t.oid = ANY(%s::oid[])
  AND NOT ({_PORTABLE.format(t="t")} AND (e.oid IS NULL OR {_PORTABLE.format(t="e")}))
"""
_COLUMN_TYPES_SQL = """
SELECT a.atttypid::int FROM pg_attribute a
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
"""


def unportable_types(conn: psycopg.Connection, oids: Iterable[int]) -> list[str]:
    """Names of the types among ``oids`` whose binary form is not safe to pass between databases
    (an OID missing from ``pg_type`` counts as unportable too)."""
    wanted = sorted(set(oids))
    rows = conn.execute(_UNPORTABLE_TYPES_SQL, (wanted,)).fetchall()
    found = {r[0] for r in conn.execute("SELECT oid::int FROM pg_type WHERE oid = ANY(%s::oid[])", (wanted,))}
    return [r[1] for r in rows] + [str(o) for o in wanted if o not in found]


def column_type_oids(conn: psycopg.Connection, table: TableName) -> list[int]:
    return [r[0] for r in conn.execute(_COLUMN_TYPES_SQL, (table.qualified,)).fetchall()]


def type_mismatches(source: Sequence[tuple[str, str]], target_types: dict[str, str]) -> list[str]:
    """Columns (name, source type) whose target column has another type (or is missing)."""
    return [f"{n} {t} -> {target_types.get(n)}" for n, t in source if target_types.get(n) != t]


def why_text(
    *,
    server_version: int,
    keys: dict[TableName, tuple[str, ...]],
    unportable: dict[TableName, list[str]],
    mismatched: dict[TableName, list[str]],
) -> str | None:
    """``None`` when the stream may be binary; else the reason it stays text (for the log)."""
    if not ALLOWED:
        return "binary mode switched off"
    if server_version < 140000:
        return "source older than PostgreSQL 14"
    keyless = [str(t) for t, k in keys.items() if not k]
    if keyless:
        return f"keyless table(s) applied by whole rows: {', '.join(keyless)}"
    for table, names in unportable.items():
        if names:
            return f"{table} has column types without a portable binary form: {', '.join(names)}"
    for table, cols in mismatched.items():
        if cols:
            return f"target {table} has other column types than the source: {', '.join(cols)}"
    return None
