"""The hot path: stream one chunk's rows from source to target as COPY bytes, never decoding a
row in Python.

The reader's ``copy_out`` (``COPY (SELECT …) TO STDOUT`` on PostgreSQL) feeds the writer's
``copy_in`` (``COPY … FROM STDIN``) through a small bounded queue; the two run concurrently, so
memory stays bounded and both servers work at the same time. Binary format when source and
target types match and are built in (no per-database OIDs inside the data), text otherwise (the
target parses the source's text form). Driver-free: both ends are :mod:`zdtp_worker.drivers`
Protocols.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from zdtp_worker.contract.spec import TableName
from zdtp_worker.drivers import SnapshotReader, TargetWriter
from zdtp_worker.full.catalog import TableInfo
from zdtp_worker.full.chunking import Chunk
from zdtp_worker.full.schema import CopyFormat

# Pieces the pipe may hold between the two sessions; asyncpg hands over ~64 KiB pieces.
_QUEUE_PIECES = 64


@dataclass(frozen=True)
class CopyStats:
    source_rows: int
    target_rows: int
    nbytes: int


async def copy_range(
    source: SnapshotReader,
    target: TargetWriter,
    *,
    info: TableInfo,
    chunk: Chunk,
    columns: list[str],
    target_table: TableName,
    fmt: CopyFormat,
    on_bytes: Callable[[int], None] | None = None,
) -> CopyStats:
    """Copy ``columns`` of the chunk's rows of ``info`` into ``target_table``; call in a target
    transaction."""
    pipe: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=_QUEUE_PIECES)
    total = 0

    async def sink(data: bytes) -> None:
        nonlocal total
        total += len(data)
        if on_bytes is not None:
            on_bytes(len(data))
        await pipe.put(data)

    async def produce() -> int:
        try:
            return await source.copy_out(info, chunk, columns=columns, fmt=fmt, sink=sink)
        finally:
            await pipe.put(None)

    async def pieces() -> AsyncIterator[bytes]:
        while (piece := await pipe.get()) is not None:
            yield piece

    producer = asyncio.create_task(produce())
    try:
        target_rows = await target.copy_in(target_table, columns, fmt=fmt, pieces=pieces())
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
    source_rows = await producer
    return CopyStats(source_rows=source_rows, target_rows=target_rows, nbytes=total)
