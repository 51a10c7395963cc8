"""Count + checksum of one key range on an asyncpg session (the query is
:mod:`zdtp_worker.control.row_checksum`, shared with ``verify``).

``count`` compares the rows the source sent with the rows the target stored for each chunk (both
reported by COPY, so it costs nothing); ``checksum`` also runs this on both sides of each chunk:
on the source inside the snapshot that read the chunk, on the target inside the transaction that
wrote it, each column whose target type differs read back as the source's type.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import asyncpg

from zdtp_worker.control.row_checksum import SumColumn, checksum_select, sum_columns
from zdtp_worker.full.catalog import TableInfo


async def range_checksum(
    conn: asyncpg.Connection, table_qualified: str, columns: Sequence[str | SumColumn], where: str
) -> tuple[int, Decimal]:
    cols = [(c, None) if isinstance(c, str) else c for c in columns]
    row = await conn.fetchrow(checksum_select(table_qualified, cols, where))
    return int(row["rows"]), Decimal(row["checksum"])


def target_sum_columns(
    source: TableInfo, target: TableInfo | None, columns: Sequence[str]
) -> list[SumColumn]:
    """The target side's checksum columns: ``columns`` with a cast where the target's type differs."""
    source_types = {c.name: c.type_sql for c in source.columns}
    target_types = {c.name: c.type_sql for c in target.columns} if target is not None else {}
    return sum_columns(columns, source_types, target_types)
