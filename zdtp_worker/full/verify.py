"""Count + checksum of one key range on an asyncpg session (the query is :mod:`zdtp_worker.pg.checksum`).

``count`` compares the rows the source sent with the rows the target stored for each chunk (both
reported by COPY, so it costs nothing); ``checksum`` also runs this on both sides of each chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import asyncpg

from zdtp_worker.pg.checksum import checksum_sql


async def range_checksum(
    conn: asyncpg.Connection, table_qualified: str, columns: Sequence[str], where: str
) -> tuple[int, Decimal]:
    row = await conn.fetchrow(checksum_sql(table_qualified, columns, where))
    return int(row["rows"]), Decimal(row["checksum"])
