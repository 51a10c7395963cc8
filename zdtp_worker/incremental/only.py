"""``ONLY`` for statements meant for one table and not its inheritance children.

A plain table (relkind ``r``) may have children (``INHERITS``; the full worker reproduces them on
the target), and ``DELETE``/``UPDATE``/``TRUNCATE``/``SELECT`` on it reach the children's rows too.
pgoutput reports each table's changes by itself (a ``TRUNCATE ONLY`` of the parent, a change of
a child row under the child), so every statement the stream runs on one table must say ``ONLY``.
A partitioned table (relkind ``p``) must not: ``ONLY`` on it reaches no rows at all.
"""

from __future__ import annotations

import psycopg

from zdtp_worker.contract.spec import TableName

RELKIND_SQL = "SELECT relkind::text FROM pg_class WHERE oid = %s::regclass"


def prefix(relkind: str | None) -> str:
    return "ONLY " if relkind == "r" else ""


def only(conn: psycopg.Connection, table: TableName) -> str:
    """``"ONLY "`` for a plain table, ``""`` for a partitioned one (or none)."""
    row = conn.execute(RELKIND_SQL, (table.qualified,)).fetchone()
    return prefix(row[0] if row else None)
