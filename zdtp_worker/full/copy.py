"""The hot path: stream one chunk's rows from source to target as COPY bytes, never decoding a
row in Python.

``COPY (SELECT …) TO STDOUT`` on the source feeds ``COPY … FROM STDIN`` on the target through a
small bounded queue; the two run concurrently, so memory stays bounded and both servers work at
the same time. Binary format when source and target types match and are built in (no per-database
OIDs inside the data), text otherwise (the target parses the source's text form).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import asyncpg

from zdtp_worker.contract.spec import TableName
from zdtp_worker.full.schema import CopyFormat

# Bytes the pipe may hold between the two connections; asyncpg hands over ~64 KiB pieces.
_QUEUE_PIECES = 64


@dataclass(frozen=True)
class CopyStats:
    source_rows: int
    target_rows: int
    nbytes: int


def _rows(status: str) -> int:
    # "COPY 123"
    try:
        return int(status.rsplit(" ", 1)[-1])
    except (ValueError, AttributeError):
        return -1


async def copy_range(
    source: asyncpg.Connection,
    target: asyncpg.Connection,
    *,
    select_sql: str,
    target_table: TableName,
    columns: list[str],
    fmt: CopyFormat,
    on_bytes: Callable[[int], None] | None = None,
) -> CopyStats:
    """Copy the rows of ``select_sql`` into ``target_table(columns)``; call in a target transaction."""
    pipe: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=_QUEUE_PIECES)
    total = 0

    async def sink(data: bytes) -> None:
        nonlocal total
        total += len(data)
        if on_bytes is not None:
            on_bytes(len(data))
        await pipe.put(data)

    async def produce() -> str:
        try:
            return await source.copy_from_query(select_sql, output=sink, format=fmt)
        finally:
            await pipe.put(None)

    async def pieces() -> AsyncIterator[bytes]:
        while (piece := await pipe.get()) is not None:
            yield piece

    producer = asyncio.create_task(produce())
    try:
        target_status = await target.copy_to_table(
            target_table.name,
            schema_name=target_table.schema_,
            columns=columns,  # asyncpg quotes the names
            source=pieces(),
            format=fmt,
        )
    except BaseException:
        source_failed = producer.done() and not producer.cancelled() and producer.exception() is not None
        if source_failed:
            # A source error truncates the stream; the target then fails too. Report the cause.
            raise producer.exception() from None  # type: ignore[misc]
        producer.cancel()
        # Drain so a producer blocked on a full queue can observe the cancellation.
        while not pipe.empty():
            pipe.get_nowait()
        with contextlib.suppress(BaseException):
            await producer
        raise
    source_status = await producer
    return CopyStats(source_rows=_rows(source_status), target_rows=_rows(target_status), nbytes=total)
