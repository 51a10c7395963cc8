"""Entry points of the full-sync engine.

- :func:`run_full_cli` — ``zdtp-worker full`` (credentials from env/Secret files, SIGTERM → 75).
- :func:`run_full` / :func:`run_full_async` — the same work as a plain call; honours
  ``spec.full.snapshot`` so the CDC engine can copy under the snapshot its slot exported.
- :func:`ensure_target_table` — create/check one target table (also used by the CDC engine).

The work itself: :mod:`.tables` (a run over the spec's tables), :mod:`.queue_run` (a run over a
work queue, and :func:`~zdtp_worker.full.queue_run.enqueue_chunks`), :mod:`.session` (sessions).

Exit codes (see ``zdtp_worker.contract.errors``): 78 malformed spec, unknown source table, wrong
credentials, missing database, invalid snapshot id; 65 table without a key (unless
``allow_single_chunk``), incompatible or lossy target table (names the column and both types), a
table zdtp cannot reproduce (names what and the fix), rows rejected, verification mismatch;
75 unreachable host, lost connection, lock timeout, serialization failure, SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import time
from argparse import Namespace

import asyncpg

from zdtp_worker.contract.errors import ConfigError, DataError, TemporaryError, WorkerError
from zdtp_worker.contract.result import WorkerResult
from zdtp_worker.contract.spec import TableName, WorkerSpec
from zdtp_worker.full.catalog import read_table
from zdtp_worker.full.chunk import SessionPair, TableJob
from zdtp_worker.full.postgres import open_pair
from zdtp_worker.full.progress import Progress, Step, log_event
from zdtp_worker.full.queue_run import run_queue
from zdtp_worker.full.schema import TargetPlan, ensure_target_table_async
from zdtp_worker.full.session import close, connect, worker_id
from zdtp_worker.full.tables import run_tables, table_result
from zdtp_worker.pg.errors import classify
from zdtp_worker.pg.session import describe_target
from zdtp_worker.pg.shape_read import read_shape


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
    step = Step()
    src = tgt = None
    extra: list[SessionPair] = []
    jobs: list[TableJob] = []
    progress = Progress(interval=opts.progress_interval_seconds)
    reporter: asyncio.Task[None] | None = None
    try:
        src, tgt = await open_pair(source_dsn, target_dsn, snapshot=opts.snapshot)
        ctx = SessionPair(
            source=src, target=tgt, worker=worker_id(spec), verify=opts.verify, progress=progress
        )
        if opts.streams > 1 and not queue_name:
            # Every stream reads the same snapshot: the one given, or one exported by this run.
            shared = opts.snapshot or await src.export_snapshot()
            for _ in range(opts.streams - 1):
                s, t = await open_pair(source_dsn, target_dsn, snapshot=shared)
                extra.append(
                    SessionPair(source=s, target=t, worker=ctx.worker, verify=opts.verify, progress=progress)
                )
        log_event("start", run_id=spec.run_id, worker=ctx.worker, mode=opts.copy_mode, queue=queue_name)
        reporter = asyncio.create_task(progress.run())
        if queue_name:
            tables = await run_queue(
                ctx,
                queue_name=queue_name,
                mode=queue_mode,
                lease_seconds=opts.lease_seconds,
                step=step,
                backend=opts.queue_backend,
            )
        else:
            same_db = describe_target(source_dsn) == describe_target(target_dsn)
            tables = await run_tables([ctx, *extra], spec, step, same_db, jobs)
    except WorkerError as exc:
        exc.tables = [table_result(j, None) for j in jobs]  # type: ignore[attr-defined]
        raise
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        error = classify(exc, role="full sync", what=step.what)
        # Finished chunks are committed: the failed result still reports them, per table.
        error.tables = [table_result(j, None) for j in jobs]  # type: ignore[attr-defined]
        raise error from None
    finally:
        if reporter is not None:
            reporter.cancel()
        ends = [c for c in (src, tgt) if c is not None]
        ends += [c for e in extra for c in (e.source, e.target)]
        for end in ends:
            await end.close()
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
# Helper for the CDC engine's initial snapshot and tests.


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
            if not info.key and not allow_single_chunk:
                raise DataError(f"source table {src_name} has no primary key")
            shape = await read_shape(src, info.oid)
            return await ensure_target_table_async(tgt, info, tgt_name, shape=shape)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise classify(exc, role="ensure target", what=str(tgt_name)) from None
        finally:
            await close(src, tgt)

    return asyncio.run(_go())
