"""What an explicitly named relation is when it is not a table zdtp copies, and what to name instead.

A view, materialized view, foreign table, sequence or partition named in ``tables:`` used to be
reported as "source has no table", which sends the user looking for a typo.
"""

from __future__ import annotations

import psycopg

from zdtp_worker.contract.identifiers import parse_qualified

# Named relations that exist but are not tables zdtp copies, with why and what to name instead.
_NOT_TABLE_SQL = """
SELECT c.relkind::text, c.relispartition,
       (SELECT quote_ident(pn.nspname) || '.' || quote_ident(pc.relname)
          FROM pg_inherits i JOIN pg_class pc ON pc.oid = i.inhparent
          JOIN pg_namespace pn ON pn.oid = pc.relnamespace
         WHERE i.inhrelid = c.oid LIMIT 1)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s
"""
_NOT_TABLE_REASONS = {
    "v": "is a view: it holds no rows of its own; name the tables it reads (create the view on the "
    "target yourself)",
    "m": "is a materialized view: zdtp copies tables; create it on the target and REFRESH "
    "MATERIALIZED VIEW there, or name the tables it reads",
    "f": "is a foreign table: its rows live outside the source database; copy them from where they "
    "are stored",
    "S": "is a sequence: zdtp carries the sequences a copied table owns; name that table",
    "c": "is a composite type, not a table",
    "i": "is an index, not a table",
    "I": "is a partitioned index, not a table",
}


def not_tables(conn: psycopg.Connection, names: list[str]) -> dict[str, str]:
    """Of ``names``, those that exist as something other than a copyable table, with the reason."""
    out = {}
    for name in names:
        row = conn.execute(_NOT_TABLE_SQL, parse_qualified(name)).fetchone()
        if row is None:
            continue
        relkind, is_partition, parent = row
        if is_partition and relkind in ("r", "p", "f"):
            out[name] = (
                f"is a partition of {parent}: zdtp copies a partitioned table through its parent "
                f"(all partitions, exactly once); name {parent}"
            )
        elif relkind in _NOT_TABLE_REASONS:
            out[name] = _NOT_TABLE_REASONS[relkind]
    return out
