"""A run over a work queue: claim an item, copy its chunk, repeat (``one`` or ``drain``); and
:func:`enqueue_chunks`, which plans a spec's tables and puts their chunks on the queue.

The queue lives in the target's ``zdtp`` schema (:mod:`.queue`); a chunk's item is marked done in
the chunk's own transaction (:mod:`.chunk`), so every chunk is committed exactly once. Tables get
their keys when the enqueue step creates them (a chunk deletes its key range first, so a retried
item never duplicates rows); after each chunk the table's sequences move to at least the source's
values, as the spec mode does at the end of a table — no queue worker knows it copies the last item.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import asyncpg

from zdtp_worker.contract.errors import ConfigError, WorkerError
from zdtp_worker.contract.result import TableResult, WorkerResult
from zdtp_worker.contract.spec import TableName, WorkerSpec
from zdtp_worker.credentials import load_dsn
from zdtp_worker.full import checkpoints, finalize, inherit, target_ddl
from zdtp_worker.full.catalog import read_table
from zdtp_worker.full.chunk import SessionPair, TableJob, copy_chunk
from zdtp_worker.full.chunking import Chunk
from zdtp_worker.full.progress import Step, log_event
from zdtp_worker.full.schema import ensure_target_table_async
from zdtp_worker.full.session import close, connect_pair
from zdtp_worker.full.tables import check_tables, prepare_table, table_result
from zdtp_worker.pg.errors import classify
from zdtp_worker.pg.session import describe_target
from zdtp_worker.pg.shape import TableShape
from zdtp_worker.pg.shape_read import read_shape
from zdtp_worker.queue.base import Backend
from zdtp_worker.queue.opener import open_queue


def _job_key(payload: dict) -> str:
    return f"{payload['run_id']}/{payload['target']}/{payload.get('part', '')}"


async def _queue_job(
    ctx: SessionPair, payload: dict, cache: dict[str, TableJob], shapes: dict[str, TableShape]
) -> TableJob:
    key = _job_key(payload)
    if key in cache:
        return cache[key]
    source = TableName.model_validate(payload["source"])
    # The key the chunks were cut by (items enqueued before keys were recorded: the default rule).
    src, tgt = ctx.source.conn, ctx.target.conn  # type: ignore[attr-defined]  # see tables.run_tables
    info = await read_table(src, source, key=tuple(payload["key"]) if payload.get("key") else None)
    if info is None:
        raise ConfigError(f"source table {source} does not exist")
    target = TableName.model_validate(payload["target"])
    copy_into = TableName.model_validate(payload.get("copy_table") or payload["target"])
    shape = shapes[key] = await read_shape(src, info.oid)
    tp = await ensure_target_table_async(tgt, info, copy_into, shape=shape)
    cache[key] = TableJob(
        run_id=payload["run_id"],
        source=info,
        target=target,
        copy_into=copy_into,
        fmt=tp.copy_format,
        part=payload.get("part", ""),
        columns=tp.columns,
    )
    return cache[key]


async def run_queue(
    ctx: SessionPair,
    *,
    queue_name: str,
    mode: str,
    lease_seconds: float,
    step: Step,
    backend: Backend = "postgres",
) -> list[TableResult]:
    """Work the queue: ``one`` item then exit, or ``drain`` until every item is done.

    Finding nothing to claim while items are still leased (a dead worker's item until its lease
    expires, or a live worker's until it commits), both modes wait rather than exit: a ``one``
    pod that exited 0 here would let a ``completions = items`` Job complete with an item never
    copied.
    """
    tgt = ctx.target
    step.what = f"queue {queue_name}"
    await tgt.state.bootstrap()
    url = load_dsn("queue") if backend == "redis" else None
    work = await open_queue(backend, target=tgt.conn, url=url)  # type: ignore[attr-defined]
    # copy_chunk reaches the queue as ctx.target.queue (hold/complete inside the chunk transaction).
    tgt.queue = work
    jobs: dict[str, TableJob] = {}
    shapes: dict[str, TableShape] = {}
    waiting = False
    try:
        await work.bootstrap()
        while True:
            item = await work.claim(queue_name, owner=ctx.worker, lease_seconds=lease_seconds)
            if item is None:
                remaining, wait = await work.open_items(queue_name)
                if remaining == 0:
                    log_event("queue_drained" if mode == "drain" else "queue_empty", queue=queue_name)
                    break
                if not waiting:
                    log_event("queue_wait", queue=queue_name, leased=remaining, lease_expires_in=wait)
                    waiting = True
                await asyncio.sleep(min(max(wait or 0.5, 0.2), 2.0))
                continue
            waiting = False
            job = await _queue_job(ctx, item.payload, jobs, shapes)
            chunk = Chunk.from_json(item.payload["chunk"])
            step.what = f"queue {queue_name} item {item.item_id} table {job.target} chunk {chunk.no}"
            try:
                copied = await copy_chunk(ctx, job, chunk, item=item)
            except BaseException:
                work.forget()  # rolled back: nothing of this chunk is done
                raise
            await work.settle()
            if copied is not None:  # idempotent and never backwards: safe after every chunk
                shape = shapes[_job_key(item.payload)]
                src, tconn = ctx.source.conn, tgt.conn  # type: ignore[attr-defined]
                moved = await target_ddl.copy_sequences(src, tconn, shape, target=job.target)
                if moved:
                    log_event("sequences", table=str(job.target), values=moved)
            if mode == "one":
                break
    finally:
        await work.close()
    return [
        table_result(job, sum(job.checksums.values(), Decimal(0)) if job.checksums else None)
        for job in jobs.values()
    ]


async def enqueue_async(
    spec: WorkerSpec,
    *,
    source_dsn: str,
    target_dsn: str,
    queue_name: str | None = None,
    queue_url: str | None = None,
) -> tuple[int, int]:
    """Plan the spec's tables and enqueue one work item per chunk not yet done; returns the
    number of new items and of items not done yet. Idempotent: enqueueing the same run again
    adds nothing (items are keyed by run, table, key range and chunk).

    Target tables and the ``zdtp`` schema are created here, once, so parallel workers do not
    race for DDL. The queue lives in the target database (``full.queue_backend: postgres``) or in
    Redis at ``queue_url``.
    """
    name = queue_name or spec.full.queue
    if not name:
        raise ConfigError("enqueue_chunks: no queue name (argument or full.queue)")
    if spec.full.copy_mode == "swap":
        raise ConfigError("full.copy_mode swap cannot be used with a work queue")

    step = Step()
    src = tgt = None
    try:
        src, tgt = await connect_pair(source_dsn, target_dsn, snapshot=spec.full.snapshot)
        step.what = "checking tables"
        same_db = describe_target(source_dsn) == describe_target(target_dsn)
        checked = await check_tables(src, tgt, spec.tables, same_database=same_db)
        await checkpoints.bootstrap(tgt)
        await finalize.bootstrap(tgt)
        items: list[tuple[str, dict]] = []
        for ts, info, _, shape in checked:
            step.what = f"table {ts.target_name}"
            # Queue items are copied by whoever claims them: no worker knows it is the last,
            # so tables get their keys at creation here.
            _, plan = await prepare_table(
                src,
                tgt,
                run_id=spec.run_id,
                opts=spec.full,
                ts=ts,
                info=info,
                shape=shape,
                keys_after_load=False,
            )
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
                    "key": list(info.key),
                    "chunk": chunk.to_json(),
                }
                items.append((f"{spec.run_id}/{plan.target_table}/{plan.part}/{chunk.no}", payload))
        # Inheritance links between the tables created here, now: no queue worker knows it copies
        # a table's last item, and a link needs no rows (every target-side chunk step reads and
        # deletes ONLY its own table).
        for ts, info, _, _ in checked:
            linked = await inherit.link(tgt, await inherit.source_edges(src, info.oid), ts)
            if linked:
                log_event("inherits", table=str(ts.target_name), links=linked)
        work = await open_queue(spec.full.queue_backend, target=tgt, url=queue_url)
        try:
            await work.bootstrap()
            added = await work.enqueue(name, items)
            left, _ = await work.open_items(name)
        finally:
            await work.close()
        log_event("enqueued", queue=name, items=added, planned=len(items), open=left)
        return added, left
    except WorkerError:
        raise
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise classify(exc, role="enqueue", what=step.what) from None
    finally:
        conns = [c for c in (src, tgt) if c is not None]
        if conns:
            await close(*conns)


def enqueue_chunks(
    spec: WorkerSpec,
    *,
    source_dsn: str,
    target_dsn: str,
    queue_name: str | None = None,
    queue_url: str | None = None,
) -> int:
    """:func:`enqueue_async` from synchronous code; returns the number of new items."""
    added, _ = asyncio.run(
        enqueue_async(
            spec, source_dsn=source_dsn, target_dsn=target_dsn, queue_name=queue_name, queue_url=queue_url
        )
    )
    return added


def enqueue_cli(spec: WorkerSpec) -> WorkerResult:
    """``zdtp-worker full --enqueue``: the copy task's enqueue pod. Its result's ``chunks`` is the
    number of items not done yet (what a ``queue`` Job needs as completions)."""
    started = time.monotonic()
    url = load_dsn("queue") if spec.full.queue_backend == "redis" else None
    added, left = asyncio.run(
        enqueue_async(spec, source_dsn=load_dsn("source"), target_dsn=load_dsn("target"), queue_url=url)
    )
    return WorkerResult(
        mode="full",
        run_id=spec.run_id,
        worker=spec.worker,
        chunks=left,
        seconds=round(time.monotonic() - started, 3),
        message=f"queue {spec.full.queue}: {added} item(s) enqueued, {left} not done",
    )
