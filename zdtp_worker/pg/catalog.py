"""Catalog queries every reader of table structure needs, in the driver's placeholder style.

asyncpg binds ``$1``, psycopg ``%s``: the query text is the same, so it is written once here and
each caller names its placeholder.
"""

from __future__ import annotations


def key_columns_sql(placeholder: str) -> str:
    """Primary-key column names of the relation whose oid is bound to ``placeholder``, in key order."""
    return (
        "SELECT a.attname"
        " FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
        f" WHERE i.indrelid = {placeholder} AND i.indisprimary ORDER BY k.ord"
    )
