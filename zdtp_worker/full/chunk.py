"""One chunk, one transaction: the unit that makes a full copy resumable and exactly-once.

In a single target transaction the engine (optionally) re-checks its queue lease, deletes the
chunk's key range, streams the rows in, verifies them, records the chunk in ``zdtp.full_chunks``
(and marks the queue item done), then commits. The record carries the check's evidence — rows
sent/stored, and at ``verify: checksum`` the source checksum under the snapshot that read the
chunk and the target checksum of what this transaction wrote — so ``verify`` later needs no quiet
source; a mismatch raises DataError (exit 65) naming the table and key range, and rolls back.
A crash at any point rolls all of it back, so a rerun redoes at most that chunk and never
leaves a duplicate. ``tables`` and ``queue_run`` drive this over a run's tables or a work queue.
Databases are reached only through the :mod:`zdtp_worker.drivers` Protocols (PostgreSQL: :mod:`.postgres`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from zdtp_worker.contract.errors import DataError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.control.row_checksum import describe_range
from zdtp_worker.drivers import SnapshotReader, TargetWriter
from zdtp_worker.full.catalog import TableInfo
from zdtp_worker.full.chunking import Chunk
from zdtp_worker.full.copy import copy_range
from zdtp_worker.full.progress import Progress, log_event
from zdtp_worker.full.queue import Item
from zdtp_worker.full.schema import CopyFormat
from zdtp_worker.pg.checksum import format_checksum

Verify = Literal["none", "count", "checksum"]


@dataclass
class SessionPair:
    """One copy pipeline: a source session inside the run's snapshot, a target session, and the
    run's options every chunk needs. A worker with ``full.streams: N`` has N of them."""

    source: SnapshotReader  # reads inside the run's snapshot
    target: TargetWriter
    worker: str  # unique per process: recorded with each chunk and used as queue lease owner
    verify: Verify
    progress: Progress


@dataclass
class TableJob:
    """One source table copied into one target (or staging) table within a run."""

    run_id: str
    source: TableInfo
    target: TableName  # the table readers see (checkpoints are keyed by it)
    copy_into: TableName  # target, or the staging table in swap mode
    fmt: CopyFormat
    part: str = ""  # the key range this worker owns (checkpoints.part_key); "" = whole table
    # Columns COPY moves (both sides' generated columns left out); () = the source's copied ones.
    columns: tuple[str, ...] = ()
    # The target is a table this run created and holds only finished chunks (see finalize): a
    # chunk has nothing to delete, and there is no index yet to delete with.
    fresh: bool = False
    # The target was created keyless by this run: its keys are built once all of it is in.
    keys_pending: bool = False
    rows: int = 0
    bytes: int = 0
    chunks: int = 0
    skipped: int = 0
    checksums: dict[int, Decimal] = field(default_factory=dict)


def _where(table: str, chunk: Chunk) -> str:
    """``table public.t chunk 3 keys [1000, 2000)``: what a failure names."""
    return f"table {table} chunk {chunk.no} keys {describe_range(chunk.to_json())}"


@dataclass(frozen=True)
class ChunkOutcome:
    rows: int
    nbytes: int
    checksum: Decimal | None


async def copy_chunk(
    ctx: SessionPair, job: TableJob, chunk: Chunk, *, item: Item | None = None
) -> ChunkOutcome | None:
    """Copy one chunk in one transaction; ``None`` when it turned out to be done or not ours."""
    columns = list(job.columns) or [c.name for c in job.source.copied]
    target_key = str(job.target)
    started = time.monotonic()
    tgt = ctx.target
    async with tgt.transaction():
        if item is not None and not await tgt.queue.hold(item, owner=ctx.worker):
            log_event("chunk_skip", table=target_key, chunk=chunk.no, reason="lease lost or item done")
            return None
        if await tgt.state.is_done(job.run_id, target_key, chunk.no, part=job.part):
            if item is not None:
                await tgt.queue.complete(item)
            log_event("chunk_skip", table=target_key, chunk=chunk.no, reason="already done")
            job.skipped += 1
            return None
        log_event("chunk_start", table=target_key, chunk=chunk.no, worker=ctx.worker)
        ctx.progress.start_chunk(target_key, chunk.no)
        if not job.fresh:
            await tgt.delete_range(job.copy_into, job.source, chunk)
        rows = nbytes = 0
        source_rows: int | None = 0
        if not chunk.empty:
            stats = await copy_range(
                ctx.source,
                tgt,
                info=job.source,
                chunk=chunk,
                columns=columns,
                target_table=job.copy_into,
                fmt=job.fmt,
                on_bytes=ctx.progress.add_bytes,
            )
            if ctx.verify != "none" and stats.source_rows != stats.target_rows:
                raise DataError(
                    f"{_where(target_key, chunk)}: source sent {stats.source_rows} rows, "
                    f"target stored {stats.target_rows}; the chunk was rolled back"
                )
            rows, nbytes, source_rows = stats.target_rows, stats.nbytes, stats.source_rows
        checksum: Decimal | None = None
        target_sum: Decimal | None = None
        if ctx.verify == "checksum":
            # Source: the same snapshot that streamed the rows. Target: this transaction, before
            # commit — so the recorded pair describes exactly the rows that commit. Two sessions:
            # both sides hash at once (measured: the checksum roughly doubles a chunk otherwise).
            # Both finish before a failure propagates: the transaction's rollback must not meet a
            # query still running on the target session.
            sides = await asyncio.gather(
                ctx.source.checksum(job.source, chunk, columns=columns),
                tgt.checksum(job.copy_into, job.source, chunk, columns=columns),
                return_exceptions=True,
            )
            for side in sides:
                if isinstance(side, BaseException):
                    raise side
            (src_rows, checksum), (tgt_rows, target_sum) = sides  # type: ignore[misc]
            if (src_rows, checksum) != (tgt_rows, target_sum):
                raise DataError(
                    f"{_where(target_key, chunk)}: data differs after the copy (source {src_rows} rows, "
                    f"checksum {format_checksum(checksum)}; target {tgt_rows} rows, checksum "
                    f"{format_checksum(target_sum)}); the chunk was rolled back"
                )
            source_rows = src_rows
        seconds = time.monotonic() - started
        await tgt.state.record_chunk(
            run_id=job.run_id,
            target=target_key,
            part=job.part,
            chunk_no=chunk.no,
            rows=rows,
            nbytes=nbytes,
            checksum=checksum,
            worker=ctx.worker,
            seconds=seconds,
            source_rows=source_rows,
            target_checksum=target_sum,
            verify=ctx.verify,
        )
        if item is not None:
            await tgt.queue.complete(item)
    ctx.progress.finish_chunk(rows, nbytes)
    job.rows += rows
    job.bytes += nbytes
    job.chunks += 1
    if checksum is not None:
        job.checksums[chunk.no] = checksum
    log_event(
        "chunk_done",
        table=target_key,
        chunk=chunk.no,
        rows=rows,
        bytes=nbytes,
        seconds=round(seconds, 3),
        rows_per_s=round(rows / seconds) if seconds > 0 else None,
    )
    return ChunkOutcome(rows, nbytes, checksum)
