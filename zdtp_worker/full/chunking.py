"""Split one table into chunks: bounded primary-key ranges, each copied in its own transaction.

Rules learned from peers: every chunk the worker *reads* is bounded on both sides at planning
time (the last one ends at the key that was the maximum, inclusive), so no chunk keeps growing
while new rows arrive (SeaTunnel #12361, Flink CDC #1375); and no OFFSET paging (Canal #4255).
The *delete* range of the first and last chunk extends to the table's (or key range's) ends, so
stale target rows outside the source's extent disappear too.

Integer keys are split arithmetically from min/max and a row estimate (cheap: two index probes);
other keys (uuid, text, composite, …) by one index-ordered pass that picks every n-th key with
``row_number()``, which gives exact chunk sizes for any ordered type.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

from zdtp_worker.contract.errors import ConfigError
from zdtp_worker.contract.spec import KeyRange
from zdtp_worker.full.catalog import INTEGER_TYPES, TableInfo
from zdtp_worker.full.sqlparts import key_text, order_by, range_clause
from zdtp_worker.pg.quoting import ident

Bound = list[str] | None


@dataclass(frozen=True)
class Chunk:
    """One unit of work. Bounds are the key columns' text forms; ``None`` = unbounded."""

    no: int
    lower: Bound  # read: key >= lower
    upper: Bound  # read: key < upper (or <= when upper_inclusive)
    upper_inclusive: bool
    del_lower: Bound  # delete in the target: key >= del_lower
    del_upper: Bound  # delete in the target: key < del_upper (or <= when del_upper_inclusive)
    del_upper_inclusive: bool
    empty: bool = False  # nothing to read at planning time: only the delete runs

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Chunk:
        return cls(**data)


def _bound(values: list[Any] | None, info: TableInfo, what: str) -> Bound:
    if values is None:
        return None
    if len(values) != len(info.key) or any(v is None for v in values):
        raise ConfigError(
            f"table {info.name}: key_range.{what} needs {len(info.key)} non-null values "
            f"for key ({', '.join(info.key)})"
        )
    return [str(v).lower() if isinstance(v, bool) else str(v) for v in values]


def rows_per_chunk(info: TableInfo, *, chunk_rows: int, chunk_bytes: int | None, rows: int) -> int:
    if chunk_bytes and rows > 0 and info.size_bytes > 0:
        avg = max(1, info.size_bytes // rows)
        return max(1, min(chunk_rows, chunk_bytes // avg))
    return chunk_rows


def single_chunk() -> list[Chunk]:
    """The whole table as one chunk (a table without a primary key, when the spec allows it)."""
    return [Chunk(0, None, None, False, None, None, False)]


async def plan_table(
    conn: asyncpg.Connection,
    info: TableInfo,
    *,
    key_range: KeyRange | None,
    chunk_rows: int,
    chunk_bytes: int | None,
) -> list[Chunk]:
    """Plan ``info``'s chunks, reading the source under the caller's transaction/snapshot."""
    if not info.key:
        return single_chunk()
    pk = info.key_columns
    kr_lower = _bound(key_range.lower if key_range else None, info, "lower")
    kr_upper = _bound(key_range.upper if key_range else None, info, "upper")
    where = range_clause(pk, kr_lower, kr_upper)
    table = info.from_sql
    last = await conn.fetchrow(
        f"SELECT {key_text(pk)} FROM {table} WHERE {where} ORDER BY {order_by(pk, descending=True)} LIMIT 1"
    )
    if last is None:
        return [Chunk(0, None, None, False, kr_lower, kr_upper, False, empty=True)]
    max_key = [str(v) for v in last.values()]

    if len(pk) == 1 and pk[0].type_sql in INTEGER_TYPES:
        starts = await _integer_starts(conn, info, where, max_key, chunk_rows, chunk_bytes, kr_lower is None)
    else:
        starts = await _sampled_starts(conn, info, where, chunk_rows, chunk_bytes)
    chunks = []
    for i, start in enumerate(starts):
        is_first, is_last = i == 0, i == len(starts) - 1
        upper = max_key if is_last else starts[i + 1]
        chunks.append(
            Chunk(
                no=i,
                lower=start,
                upper=upper,
                upper_inclusive=is_last,
                del_lower=kr_lower if is_first else start,
                del_upper=kr_upper if is_last else upper,
                del_upper_inclusive=False,
            )
        )
    return chunks


async def _integer_starts(
    conn: asyncpg.Connection,
    info: TableInfo,
    where: str,
    max_key: list[str],
    chunk_rows: int,
    chunk_bytes: int | None,
    whole_table: bool,
) -> list[list[str]]:
    col = info.key_columns[0]
    lo = int(await conn.fetchval(f"SELECT min({ident(col.name)}) FROM {info.from_sql} WHERE {where}"))
    hi = int(max_key[0])
    if whole_table and info.est_rows > 0:
        rows = info.est_rows
    else:
        rows = int(await conn.fetchval(f"SELECT count(*) FROM {info.from_sql} WHERE {where}"))
    per_chunk = rows_per_chunk(info, chunk_rows=chunk_rows, chunk_bytes=chunk_bytes, rows=rows)
    span = hi - lo + 1
    step = max(1, math.ceil(span * per_chunk / max(rows, 1)))
    return [[str(v)] for v in range(lo, hi + 1, step)]


async def _sampled_starts(
    conn: asyncpg.Connection, info: TableInfo, where: str, chunk_rows: int, chunk_bytes: int | None
) -> list[list[str]]:
    pk = info.key_columns
    rows = info.est_rows if info.est_rows > 0 else 0
    per_chunk = rows_per_chunk(info, chunk_rows=chunk_rows, chunk_bytes=chunk_bytes, rows=rows)
    if chunk_bytes and rows == 0:
        count = int(await conn.fetchval(f"SELECT count(*) FROM {info.from_sql} WHERE {where}"))
        per_chunk = rows_per_chunk(info, chunk_rows=chunk_rows, chunk_bytes=chunk_bytes, rows=count)
    cols = ", ".join(f"s.zdtp_k{i}" for i in range(len(pk)))
    sql = (
        f"SELECT {cols} FROM (SELECT {key_text(pk)}, row_number() OVER (ORDER BY {order_by(pk)}) AS zdtp_rn "
        f"FROM {info.from_sql} WHERE {where}) s WHERE (s.zdtp_rn - 1) % {int(per_chunk)} = 0 "
        f"ORDER BY s.zdtp_rn"
    )
    return [[str(v) for v in r.values()] for r in await conn.fetch(sql)]
