"""A run over the spec's tables: check them all, then per table prepare (target or staging
table, chunk plan) and copy the chunks not done yet, over one or more session pairs; swap in;
build the keys of a table this run created once all of it is in; move its sequences.

Order of work, chosen so bad input changes nothing in the target: check every table (exists,
has a key or may be one chunk, target compatible or creatable) before creating the ``zdtp``
schema, target tables and plans.

Keys after the load (:mod:`.finalize`) apply in ``resume`` mode without checksum verification:
``restart`` forgets finished chunks whose rows are still there (its deletes need the key index),
checksums read each chunk's range back from the target (they need it too), ``swap`` builds its
staging table whole.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import asyncpg

from zdtp_worker.contract.errors import ConfigError, DataError
from zdtp_worker.contract.result import TableResult
from zdtp_worker.contract.spec import FullOptions, TableSpec, WorkerSpec
from zdtp_worker.control import row_checksum, source_check
from zdtp_worker.full import checkpoints, finalize, inherit, key_order, target_ddl
from zdtp_worker.full.catalog import TableInfo, read_table
from zdtp_worker.full.chunk import SessionPair, TableJob, copy_chunk
from zdtp_worker.full.chunking import Chunk, plan_table, single_chunk
from zdtp_worker.full.progress import Step, log_event
from zdtp_worker.full.schema import (
    TargetPlan,
    ensure_staging_table,
    ensure_target_table_async,
    inspect_target,
    lock_name,
    staging_name,
    swap_in,
)
from zdtp_worker.full.verify import target_sum_columns
from zdtp_worker.pg.checksum import format_checksum
from zdtp_worker.pg.shape import TableShape
from zdtp_worker.pg.shape_read import read_shape

Checked = tuple[TableSpec, TableInfo, TargetPlan, TableShape]


async def check_tables(
    src: asyncpg.Connection,
    tgt: asyncpg.Connection,
    tables: list[TableSpec],
    *,
    same_database: bool,
) -> list[Checked]:
    """Read-only validation of every table before anything is written."""
    checked = []
    seen: set[tuple[str, str]] = set()
    for ts in tables:
        target = ts.target_name
        # Two key ranges of one table may share a worker; the same range twice is a bad spec.
        part = (str(target), checkpoints.part_key(ts.key_range))
        if part in seen:
            raise ConfigError(f"target table {target} appears twice in the spec")
        seen.add(part)
        if same_database and ts.source == target:
            raise ConfigError(f"table {target}: source and target are the same table")
        info = await read_table(src, ts.source, key=ts.key)
        if info is None:
            raise ConfigError(f"source table {ts.source} does not exist")
        if not info.key and not ts.allow_single_chunk:
            raise DataError(
                f"source table {ts.source} has no primary key and no unique index on NOT NULL columns; "
                "set allow_single_chunk to copy it as one chunk"
            )
        if await src.fetchval(source_check.row_security_sql("$1"), info.oid):
            raise DataError(source_check.row_security_message(str(ts.source)))
        await _check_readable(src, ts, info)
        await _check_large_objects(src, ts, info)
        await _check_xml(src, tgt, ts, info)
        await _check_acl_roles(src, tgt, ts, info)
        shape = await read_shape(src, info.oid)
        plan = await inspect_target(tgt, info, target)
        if not plan.exists:
            await target_ddl.check_creatable(tgt, shape, target=target)
            await target_ddl.trial_create(tgt, shape, target=target)
        checked.append((ts, info, plan, shape))
    return checked


async def _check_readable(src: asyncpg.Connection, ts: TableSpec, info: TableInfo) -> None:
    """ConfigError before anything is written when the source role cannot read all of the table
    (a column privilege withheld, an owned sequence): otherwise the copy fails half-way."""
    columns = [r[0] for r in await src.fetch(source_check.unreadable_columns_sql("$1"), info.oid)]
    sequences = [r[0] for r in await src.fetch(source_check.unreadable_sequences_sql("$1"), info.oid)]
    if columns or sequences:
        raise ConfigError(source_check.unreadable_message(str(ts.source), columns, sequences))


async def _check_large_objects(src: asyncpg.Connection, ts: TableSpec, info: TableInfo) -> None:
    """DataError when a column holds large-object references (the objects would stay behind)."""
    found = source_check.oid_columns(await src.fetch(source_check.oid_columns_sql("$1"), info.oid))
    refs = [c for c in found if c.is_domain]
    plain = [c for c in found if not c.is_domain]
    if plain and await src.fetchval(source_check.HAS_LARGE_OBJECTS):
        refs += [c for c in plain if await src.fetchval(c.references_sql(info.from_sql))]
    if refs:
        raise DataError(source_check.large_object_message(str(ts.source), refs))


async def _check_xml(
    src: asyncpg.Connection, tgt: asyncpg.Connection, ts: TableSpec, info: TableInfo
) -> None:
    """DataError when the table has xml columns and the target cannot parse xml (no libxml)."""
    columns = [r[0] for r in await src.fetch(source_check.xml_columns_sql("$1"), info.oid)]
    if not columns:
        return
    try:
        await tgt.fetchval(source_check.XML_PROBE)
    except asyncpg.FeatureNotSupportedError:
        raise DataError(source_check.xml_message(str(ts.source), columns)) from None


async def _check_acl_roles(
    src: asyncpg.Connection, tgt: asyncpg.Connection, ts: TableSpec, info: TableInfo
) -> None:
    """DataError when aclitem values name roles the target lacks (the text COPY would fail)."""
    for column, is_array in await src.fetch(source_check.acl_columns_sql("$1"), info.oid):
        roles = [r[0] for r in await src.fetch(source_check.acl_roles_sql(info.from_sql, column, is_array))]
        present = {
            r[0]
            for r in await tgt.fetch("SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[])", roles)
        }
        missing = [r for r in roles if r not in present]
        if missing:
            raise DataError(source_check.acl_message(str(ts.source), column, missing))


def table_result(job: TableJob, checksum: Decimal | None) -> TableResult:
    return TableResult(
        table=str(job.target),
        rows=job.rows,
        bytes=job.bytes,
        chunks=job.chunks,
        chunks_skipped=job.skipped,
        checksum=format_checksum(checksum),
    )


async def table_checksum(tgt: asyncpg.Connection, run_id: str, target: str, part: str) -> Decimal | None:
    done = await checkpoints.done_chunks(tgt, run_id, target, part=part)
    sums = [d.checksum for d in done.values()]
    if not sums or any(s is None for s in sums):
        return None
    return sum(sums, Decimal(0))  # type: ignore[arg-type]


def defer_keys(opts: FullOptions) -> bool:
    return opts.copy_mode == "resume" and opts.verify != "checksum"


async def prepare_table(
    src: asyncpg.Connection,
    tgt: asyncpg.Connection,
    *,
    run_id: str,
    opts: FullOptions,
    ts: TableSpec,
    info: TableInfo,
    shape: TableShape,
    keys_after_load: bool = True,
) -> tuple[TableJob, checkpoints.Plan]:
    """Create target/staging table and load or make the plan (reused by a rerun of the run)."""
    target = ts.target_name
    key = str(target)
    part = checkpoints.part_key(ts.key_range)
    if opts.copy_mode == "restart":
        await checkpoints.forget_run(tgt, run_id, key, part=part)
    plan = await checkpoints.load_plan(tgt, run_id, key, part=part)
    fresh = pending = False
    if opts.copy_mode == "swap":
        copy_into = staging_name(target, run_id)
        if plan is None or not plan.swapped:
            tp = await ensure_staging_table(tgt, info, target, copy_into, shape=shape)
        else:
            tp = await inspect_target(tgt, info, target)
    else:
        copy_into = target
        deferred = keys_after_load and defer_keys(opts)

        async def created() -> None:
            await finalize.record_created(tgt, run_id=run_id, target=key, keyless=deferred)

        tp = await ensure_target_table_async(
            tgt,
            info,
            target,
            shape=shape,
            with_keys=not deferred,
            # Recorded also when keys come at creation (queue runs): what zdtp created it may link
            # by inheritance later (inherit.link changes only such tables).
            on_create=created,
        )
        # Keyless because this run created it so: even a ``restart`` of the run must build them.
        pending = keys_after_load and await finalize.pending(tgt, run_id=run_id, target=key)
        fresh = deferred and pending
    # The checksum's columns with the casts the target side needs, kept with the plan so verify
    # can re-check the whole table exactly as the chunks were checked.
    copied = list(tp.columns) or [c.name for c in info.copied]
    landing = await read_table(tgt, tp.target)
    sums = row_checksum.to_json(target_sum_columns(info, landing, copied))
    if plan is not None:
        await checkpoints.keep_sum_columns(tgt, run_id, key, part=part, sum_columns=sums)
    else:
        # Key ranges only where both servers order the key alike (see key_order): else one chunk.
        unlike = (
            await key_order.differing_columns(src, info.oid, tgt, landing.oid, info.key)
            if info.key and landing is not None
            else []
        )
        if unlike and ts.key_range is not None:
            raise DataError(
                f"source table {ts.source}: key column(s) {'; '.join(unlike)} sort differently on the"
                " target, so the key range of this part would hold other rows there; plan the table"
                " without key ranges (it is then copied as one chunk)"
            )
        if unlike:
            log_event("single_chunk", table=key, reason="key order differs", columns=unlike)
        chunks = (
            await plan_table(
                src, info, key_range=ts.key_range, chunk_rows=opts.chunk_rows, chunk_bytes=opts.chunk_bytes
            )
            if info.key and not unlike
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
            sum_columns=sums,
        )
        log_event(
            "plan",
            table=key,
            part=part,
            source=str(ts.source),
            chunks=len(plan.chunks),
            copy_into=str(copy_into),
            key=list(info.key),
            keys_after_load=fresh,
        )
    job = TableJob(
        run_id=run_id,
        source=info,
        target=target,
        copy_into=copy_into,
        fmt=tp.copy_format,
        part=part,
        columns=tp.columns,
        fresh=fresh,
        keys_pending=pending,
    )
    return job, plan


async def finish_table(
    src: asyncpg.Connection, tgt: asyncpg.Connection, *, job: TableJob, ts: TableSpec, shape: TableShape
) -> None:
    """After this worker's part of a table: build its keys if this run created it keyless and
    every part is in; then move its sequences to at least the source's values."""
    key = str(job.target)
    if job.keys_pending:
        async with tgt.transaction():
            await lock_name(tgt, key)
            if await finalize.finish_part(
                tgt, run_id=job.run_id, target=key, part=job.part, key_range=ts.key_range
            ):
                built = await target_ddl.build_keys(tgt, shape, target=job.target)
                await finalize.mark_finalized(tgt, run_id=job.run_id, target=key)
                log_event("keys_built", table=key, keys=built)
    moved = await target_ddl.copy_sequences(src, tgt, shape, target=job.target)
    if moved:
        log_event("sequences", table=key, values=moved)
    linked = await inherit.link(tgt, await inherit.source_edges(src, job.source.oid), ts)
    if linked:
        log_event("inherits", table=key, links=linked)


async def copy_chunks(streams: list[SessionPair], job: TableJob, chunks: list[Chunk], step: Step) -> None:
    """Copy ``chunks`` over one or more streams; each stream takes the next chunk when free."""
    todo = iter(chunks)  # shared by the streams; the event loop is single-threaded

    async def stream(ctx: SessionPair) -> None:
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


async def run_tables(
    streams: list[SessionPair], spec: WorkerSpec, step: Step, same_database: bool, jobs: list[TableJob]
) -> list[TableResult]:
    """Copy every table of ``spec``; ``jobs`` collects each table's figures as it goes, so a
    failure can still report what was finished."""
    ctx = streams[0]
    # Table preparation still runs on the PostgreSQL sessions themselves (not behind
    # zdtp_worker.drivers yet); the chunks go through the Protocols.
    src, tgt, opts = ctx.source.conn, ctx.target.conn, spec.full  # type: ignore[attr-defined]
    step.what = "checking tables"
    checked = await check_tables(src, tgt, spec.tables, same_database=same_database)
    ctx.progress.total_rows = sum(max(info.est_rows, 0) for _, info, _, _ in checked)
    step.what = "creating zdtp schema"
    await checkpoints.bootstrap(tgt)
    await finalize.bootstrap(tgt)
    results = []
    for ts, info, _, shape in checked:
        key = str(ts.target_name)
        step.what = f"table {key}"
        job, plan = await prepare_table(
            src, tgt, run_id=spec.run_id, opts=opts, ts=ts, info=info, shape=shape
        )
        jobs.append(job)
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
            await copy_chunks(streams, job, pending, step)
            if opts.copy_mode == "swap":
                step.what = f"table {key} swap"
                async with tgt.transaction():
                    await swap_in(tgt, staging=job.copy_into, target=job.target)
                    await checkpoints.mark_swapped(tgt, spec.run_id, key, part=job.part)
                log_event("swap", table=key, staging=str(job.copy_into))
        step.what = f"table {key} keys and sequences"
        await finish_table(src, tgt, job=job, ts=ts, shape=shape)
        checksum = (
            await table_checksum(tgt, spec.run_id, key, job.part) if opts.verify == "checksum" else None
        )
        results.append(table_result(job, checksum))
    return results
