"""Entry points of the full-sync engine.

- :func:`run_full_cli` — ``zdtp-worker full`` (credentials from env/Secret files, SIGTERM → 75).
- :func:`run_full` / :func:`run_full_async` — the same work as a plain call; honours
  ``spec.full.snapshot`` so the CDC engine can copy under the snapshot its slot exported.
- :func:`ensure_target_table` — create/check one target table (also used by the CDC engine).
- :func:`enqueue_chunks` — plan the spec's tables and put their chunks on a work queue.

Order of work, chosen so bad input changes nothing in the target: connect both sides, open the
source snapshot, check every table (exists, has a PK, target compatible), and only then create
the ``zdtp`` schema, target tables and plans, and copy.

Exit codes (see ``zdtp_worker.contract.errors``): 78 malformed spec, unknown source table, wrong
credentials, missing database, invalid snapshot id; 65 table without primary key (unless
``allow_single_chunk``), incompatible target table (names the column), rows rejected, verification
mismatch; 75 unreachable host, lost connection, lock timeout, serialization failure, SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from argparse import Namespace
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from zdtp_worker.contract.errors import ConfigError, DataError, TemporaryError, WorkerError
from zdtp_worker.contract.result import TableResult, WorkerResult
from zdtp_worker.contract.spec import FullOptions, TableName, TableSpec, WorkerSpec
from zdtp_worker.full import checkpoints, queue
from zdtp_worker.full.catalog import TableInfo, read_table
from zdtp_worker.full.engine import Context, TableJob, copy_chunk
from zdtp_worker.full.pg import connect, describe_target, literal, map_error
from zdtp_worker.full.planner import Chunk, plan_table, single_chunk
from zdtp_worker.full.progress import Progress, log_event
from zdtp_worker.full.schema import (
    TargetPlan,
    ensure_staging_table,
    ensure_target_table_async,
    inspect_target,
    staging_name,
    swap_in,
)
from zdtp_worker.full.verify import format_checksum


@dataclass
class _Step:
    """What the run is doing, so an unexpected database error can say where it happened."""

    what: str = "connect"


async def _open_source_snapshot(src: asyncpg.Connection, snapshot: str | None) -> None:
    """One REPEATABLE READ transaction for the whole run: every chunk reads the same snapshot."""
    await src.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    if snapshot:
        try:
            await src.execute(f"SET TRANSACTION SNAPSHOT {literal(snapshot)}")
        except asyncpg.PostgresError as exc:
            raise ConfigError(f"full.snapshot {snapshot!r}: {str(exc).splitlines()[0]}") from None


async def _connect_pair(
    source_dsn: str, target_dsn: str, *, snapshot: str | None
) -> tuple[asyncpg.Connection, asyncpg.Connection]:
    src = await connect(source_dsn, role="source")
    try:
        tgt = await connect(target_dsn, role="target")
    except BaseException:
        await src.close()
        raise
    try:
        # Safe: a chunk's data and its checkpoint commit together, so a commit lost in a server
        # crash loses both and the chunk is simply redone.
        await tgt.execute("SET synchronous_commit = off")
        await tgt.execute("SET lock_timeout = '60s'")
        await _open_source_snapshot(src, snapshot)
    except BaseException:
        await _close(src, tgt)
        raise
    return src, tgt


async def _close(*conns: asyncpg.Connection) -> None:
    for conn in conns:
        try:
            await asyncio.wait_for(conn.close(), timeout=5)
        except Exception:
            conn.terminate()


async def _check_tables(
    src: asyncpg.Connection,
    tgt: asyncpg.Connection,
    tables: list[TableSpec],
    *,
    same_database: bool,
) -> list[tuple[TableSpec, TableInfo, TargetPlan]]:
    """Read-only validation of every table before anything is written."""
    checked = []
    seen: set[str] = set()
    for ts in tables:
        target = ts.target_name
        if str(target) in seen:
            raise ConfigError(f"target table {target} appears twice in the spec")
        seen.add(str(target))
        if same_database and ts.source == target:
            raise ConfigError(f"table {target}: source and target are the same table")
        info = await read_table(src, ts.source)
        if info is None:
            raise ConfigError(f"source table {ts.source} does not exist")
        if not info.pk and not ts.allow_single_chunk:
            raise DataError(
                f"source table {ts.source} has no primary key; set allow_single_chunk to copy it as one chunk"
            )
        checked.append((ts, info, await inspect_target(tgt, info, target)))
    return checked


def _table_result(job: TableJob, checksum: Decimal | None) -> TableResult:
    return TableResult(
        table=str(job.target),
        rows=job.rows,
        bytes=job.bytes,
        chunks=job.chunks,
        chunks_skipped=job.skipped,
        checksum=format_checksum(checksum),
    )


async def _table_checksum(tgt: asyncpg.Connection, run_id: str, target: str, part: str) -> Decimal | None:
    done = await checkpoints.done_chunks(tgt, run_id, target, part=part)
    sums = [d.checksum for d in done.values()]
    if not sums or any(s is None for s in sums):
        return None
    return sum(sums, Decimal(0))  # type: ignore[arg-type]


async def _prepare_table(
    src: asyncpg.Connection,
    tgt: asyncpg.Connection,
    *,
    run_id: str,
    opts: FullOptions,
    ts: TableSpec,
    info: TableInfo,
) -> tuple[TableJob, checkpoints.Plan]:
    """Create target/staging table and load or make the plan (reused by a rerun of the run)."""
    target = ts.target_name
    key = str(target)
    part = checkpoints.part_key(ts.key_range)
    if opts.copy_mode == "restart":
        await checkpoints.forget_run(tgt, run_id, key, part=part)
    plan = await checkpoints.load_plan(tgt, run_id, key, part=part)
    if opts.copy_mode == "swap":
        copy_into = staging_name(target, run_id)
        if plan is None or not plan.swapped:
            tp = await ensure_staging_table(tgt, info, target, copy_into)
        else:
            tp = await inspect_target(tgt, info, target)
    else:
        copy_into = target
        tp = await ensure_target_table_async(tgt, info, target)
    if plan is None:
        chunks = (
            await plan_table(
                src, info, key_range=ts.key_range, chunk_rows=opts.chunk_rows, chunk_bytes=opts.chunk_bytes
            )
            if info.pk
            else single_chunk()
        )
        plan = await checkpoints.save_plan(
            tgt,
            run_id=run_id,
            target=key,
            part=part,
            source=str(ts.source),
            copy_table=str(copy_into),
            chunks=chunks,
        )
        log_event(
            "plan",
            table=key,
            part=part,
            source=str(ts.source),
            chunks=len(plan.chunks),
            copy_into=str(copy_into),
        )
    job = TableJob(
        run_id=run_id, source=info, target=target, copy_into=copy_into, fmt=tp.copy_format, part=part
    )
    return job, plan


async def _copy_chunks(streams: list[Context], job: TableJob, chunks: list[Chunk], step: _Step) -> None:
    """Copy ``chunks`` over one or more streams; each stream takes the next chunk when free."""
    todo = iter(chunks)  # shared by the streams; the event loop is single-threaded

    async def stream(ctx: Context) -> None:
        for chunk in todo:
            step.what = f"table {job.target} chunk {chunk.no}"
            await copy_chunk(ctx, job, chunk)

    if len(streams) == 1:
        await stream(streams[0])
        return
    try:
        async with asyncio.TaskGroup() as group:
            for ctx in streams:
                group.create_task(stream(ctx))
    except BaseExceptionGroup as exc:
        # Report the first real failure (the other streams were cancelled because of it).
        first = next((e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)), exc)
        raise first from None


async def _run_tables(
    streams: list[Context], spec: WorkerSpec, step: _Step, same_database: bool
) -> list[TableResult]:
    ctx = streams[0]
    src, tgt, opts = ctx.source, ctx.target, spec.full
    step.what = "checking tables"
    checked = await _check_tables(src, tgt, spec.tables, same_database=same_database)
    ctx.progress.total_rows = sum(max(info.est_rows, 0) for _, info, _ in checked)
    step.what = "creating zdtp schema"
    await checkpoints.bootstrap(tgt)
    results = []
    for ts, info, _ in checked:
        key = str(ts.target_name)
        step.what = f"table {key}"
        job, plan = await _prepare_table(src, tgt, run_id=spec.run_id, opts=opts, ts=ts, info=info)
        if plan.swapped:
            log_event("table_skip", table=key, reason="run already swapped in")
            job.skipped = len(plan.chunks)
        else:
            done = await checkpoints.done_chunks(tgt, spec.run_id, key, part=job.part)
            pending = []
            for chunk in plan.chunks:
                if chunk.no in done:
                    job.skipped += 1
                    log_event("chunk_skip", table=key, chunk=chunk.no, reason="already done")
                else:
                    pending.append(chunk)
            await _copy_chunks(streams, job, pending, step)
            if opts.copy_mode == "swap":
                step.what = f"table {key} swap"
                async with tgt.transaction():
                    await swap_in(tgt, staging=job.copy_into, target=job.target)
                    await checkpoints.mark_swapped(tgt, spec.run_id, key, part=job.part)
                log_event("swap", table=key, staging=str(job.copy_into))
        checksum = (
            await _table_checksum(tgt, spec.run_id, key, job.part) if opts.verify == "checksum" else None
        )
        results.append(_table_result(job, checksum))
    return results


async def _queue_job(ctx: Context, payload: dict, cache: dict[str, TableJob]) -> TableJob:
    key = f"{payload['run_id']}/{payload['target']}/{payload.get('part', '')}"
    if key in cache:
        return cache[key]
    source = TableName.model_validate(payload["source"])
    info = await read_table(ctx.source, source)
    if info is None:
        raise ConfigError(f"source table {source} does not exist")
    target = TableName.model_validate(payload["target"])
    copy_into = TableName.model_validate(payload.get("copy_table") or payload["target"])
    tp = await ensure_target_table_async(ctx.target, info, copy_into)
    cache[key] = TableJob(
        run_id=payload["run_id"],
        source=info,
        target=target,
        copy_into=copy_into,
        fmt=tp.copy_format,
        part=payload.get("part", ""),
    )
    return cache[key]


async def _run_queue(
    ctx: Context, *, queue_name: str, mode: str, lease_seconds: float, step: _Step
) -> list[TableResult]:
    tgt = ctx.target
    step.what = f"queue {queue_name}"
    await checkpoints.bootstrap(tgt)
    await queue.bootstrap(tgt)
    jobs: dict[str, TableJob] = {}
    while True:
        item = await queue.claim(tgt, queue_name, owner=ctx.worker, lease_seconds=lease_seconds)
        if item is None:
            if mode == "one":
                log_event("queue_empty", queue=queue_name)
                break
            remaining, wait = await queue.open_items(tgt, queue_name)
            if remaining == 0:
                log_event("queue_drained", queue=queue_name)
                break
            # Items leased by others: wait for them to finish or for a dead worker's lease to expire.
            await asyncio.sleep(min(max(wait or 0.5, 0.2), 2.0))
            continue
        job = await _queue_job(ctx, item.payload, jobs)
        chunk = Chunk.from_json(item.payload["chunk"])
        step.what = f"queue {queue_name} item {item.item_id} table {job.target} chunk {chunk.no}"
        await copy_chunk(ctx, job, chunk, item=item)
        if mode == "one":
            break
    return [
        _table_result(job, sum(job.checksums.values(), Decimal(0)) if job.checksums else None)
        for job in jobs.values()
    ]


def _worker_id(spec: WorkerSpec) -> str:
    return f"{spec.worker}/{socket.gethostname()}/{os.getpid()}"


async def run_full_async(
    spec: WorkerSpec,
    *,
    source_dsn: str,
    target_dsn: str,
    queue_name: str | None = None,
    queue_mode: str | None = None,
) -> WorkerResult:
    """Copy the spec's tables (or work a queue) and return the result summary.

    Raises :class:`~zdtp_worker.contract.errors.WorkerError` subclasses; the CLI turns them into exit
    codes, a library caller can inspect ``exc.exit_code``.
    """
    started = time.monotonic()
    opts = spec.full
    queue_name = queue_name or opts.queue
    queue_mode = queue_mode or opts.queue_mode
    if queue_name and opts.copy_mode == "swap":
        raise ConfigError("full.copy_mode swap cannot be used with a work queue")
    step = _Step()
    src = tgt = None
    extra: list[Context] = []
    progress = Progress(interval=opts.progress_interval_seconds)
    reporter: asyncio.Task[None] | None = None
    try:
        src, tgt = await _connect_pair(source_dsn, target_dsn, snapshot=opts.snapshot)
        ctx = Context(source=src, target=tgt, worker=_worker_id(spec), verify=opts.verify, progress=progress)
        if opts.streams > 1 and not queue_name:
            # Every stream reads the same snapshot: the one given, or one exported by this run.
            shared = opts.snapshot or await src.fetchval("SELECT pg_export_snapshot()")
            for _ in range(opts.streams - 1):
                s, t = await _connect_pair(source_dsn, target_dsn, snapshot=shared)
                extra.append(
                    Context(source=s, target=t, worker=ctx.worker, verify=opts.verify, progress=progress)
                )
        log_event("start", run_id=spec.run_id, worker=ctx.worker, mode=opts.copy_mode, queue=queue_name)
        reporter = asyncio.create_task(progress.run())
        if queue_name:
            tables = await _run_queue(
                ctx, queue_name=queue_name, mode=queue_mode, lease_seconds=opts.lease_seconds, step=step
            )
        else:
            same_db = describe_target(source_dsn) == describe_target(target_dsn)
            tables = await _run_tables([ctx, *extra], spec, step, same_db)
    except WorkerError:
        raise
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise map_error(exc, role="full sync", what=step.what) from None
    finally:
        if reporter is not None:
            reporter.cancel()
        conns = [c for c in (src, tgt) if c is not None]
        conns += [c for e in extra for c in (e.source, e.target)]
        if conns:
            await _close(*conns)
    result = WorkerResult(
        mode="full",
        run_id=spec.run_id,
        worker=spec.worker,
        rows=sum(t.rows for t in tables),
        bytes=sum(t.bytes for t in tables),
        chunks=sum(t.chunks for t in tables),
        seconds=round(time.monotonic() - started, 3),
        tables=tables,
    )
    log_event(
        "done",
        rows=result.rows,
        chunks=result.chunks,
        seconds=result.seconds,
        rows_per_s=round(result.rows / result.seconds) if result.seconds else None,
    )
    return result


def run_full(
    spec: WorkerSpec,
    *,
    source_dsn: str,
    target_dsn: str,
    queue_name: str | None = None,
    queue_mode: str | None = None,
) -> WorkerResult:
    """Blocking form of :func:`run_full_async` (call it from code without a running event loop)."""
    return asyncio.run(
        run_full_async(
            spec, source_dsn=source_dsn, target_dsn=target_dsn, queue_name=queue_name, queue_mode=queue_mode
        )
    )


def run_full_cli(spec: WorkerSpec, args: Namespace) -> WorkerResult:
    """``zdtp-worker full``: credentials from env/Secret files; SIGTERM ends with exit code 75."""
    from zdtp_worker.credentials import load_dsn

    source_dsn, target_dsn = load_dsn("source"), load_dsn("target")

    async def _main() -> WorkerResult:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await run_full_async(
                spec,
                source_dsn=source_dsn,
                target_dsn=target_dsn,
                queue_name=getattr(args, "queue", None),
                queue_mode=getattr(args, "queue_mode", None),
            )
        except asyncio.CancelledError:
            raise TemporaryError("terminated by SIGTERM; finished chunks are kept, a rerun resumes") from None

    return asyncio.run(_main())


# ---------------------------------------------------------------------------------------------
# Helpers for other packages (CDC initial snapshot, the Airflow-side planner).


def ensure_target_table(
    *,
    source_dsn: str,
    target_dsn: str,
    source: TableName | str,
    target: TableName | str | None = None,
    allow_single_chunk: bool = False,
) -> TargetPlan:
    """Create ``target`` (default: same name as ``source``) shaped like the source table, or check
    that the existing one is compatible. Raises ConfigError/DataError/TemporaryError."""
    src_name = TableName.model_validate(source)
    tgt_name = TableName.model_validate(target) if target is not None else src_name

    async def _go() -> TargetPlan:
        src = await connect(source_dsn, role="source")
        try:
            tgt = await connect(target_dsn, role="target")
        except BaseException:
            await src.close()
            raise
        try:
            info = await read_table(src, src_name)
            if info is None:
                raise ConfigError(f"source table {src_name} does not exist")
            if not info.pk and not allow_single_chunk:
                raise DataError(f"source table {src_name} has no primary key")
            return await ensure_target_table_async(tgt, info, tgt_name)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise map_error(exc, role="ensure target", what=str(tgt_name)) from None
        finally:
            await _close(src, tgt)

    return asyncio.run(_go())


def enqueue_chunks(
    spec: WorkerSpec,
    *,
    source_dsn: str,
    target_dsn: str,
    queue_name: str | None = None,
) -> int:
    """Plan the spec's tables and enqueue one work item per chunk not yet done; returns the
    number of new items. Idempotent: enqueueing the same run again adds nothing.

    Target tables and the ``zdtp`` schema are created here, once, so parallel workers do not
    race for DDL. The queue lives in the target database.
    """
    name = queue_name or spec.full.queue
    if not name:
        raise ConfigError("enqueue_chunks: no queue name (argument or full.queue)")
    if spec.full.copy_mode == "swap":
        raise ConfigError("full.copy_mode swap cannot be used with a work queue")

    async def _go() -> int:
        step = _Step()
        src = tgt = None
        try:
            src, tgt = await _connect_pair(source_dsn, target_dsn, snapshot=spec.full.snapshot)
            step.what = "checking tables"
            same_db = describe_target(source_dsn) == describe_target(target_dsn)
            checked = await _check_tables(src, tgt, spec.tables, same_database=same_db)
            await checkpoints.bootstrap(tgt)
            await queue.bootstrap(tgt)
            items: list[tuple[str, dict]] = []
            for ts, info, _ in checked:
                step.what = f"table {ts.target_name}"
                _, plan = await _prepare_table(src, tgt, run_id=spec.run_id, opts=spec.full, ts=ts, info=info)
                done = await checkpoints.done_chunks(tgt, spec.run_id, plan.target_table, part=plan.part)
                for chunk in plan.chunks:
                    if chunk.no in done:
                        continue
                    payload = {
                        "run_id": spec.run_id,
                        "task": spec.task,
                        "source": plan.source_table,
                        "target": plan.target_table,
                        "part": plan.part,
                        "copy_table": plan.copy_table,
                        "chunk": chunk.to_json(),
                    }
                    items.append((f"{spec.run_id}/{plan.target_table}/{plan.part}/{chunk.no}", payload))
            added = await queue.enqueue(tgt, name, items)
            log_event("enqueued", queue=name, items=added, planned=len(items))
            return added
        except WorkerError:
            raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise map_error(exc, role="enqueue", what=step.what) from None
        finally:
            conns = [c for c in (src, tgt) if c is not None]
            if conns:
                await _close(*conns)

    return asyncio.run(_go())
