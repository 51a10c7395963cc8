"""The ``--initial-snapshot`` copy: every table's content replaced under the slot's exported
snapshot, one target transaction per table.

Each table is emptied (``DELETE``) and filled chunk by chunk (the full copy's COPY pipe,
:func:`zdtp_worker.full.copy.copy_range`) inside **one** target transaction, so readers see the
table's previous content until the new one is complete, and a copy that fails or is killed
part-way leaves the previous content. (The earlier committed ``TRUNCATE`` first left the target
empty after a failed copy.) ``DELETE``, not ``TRUNCATE``, so readers are not blocked for the
whole copy, and the target table itself stays (its triggers, grants and dependent views too),
which a swap-in of a staging table would replace.

No chunk checkpoints: a retry runs under a new slot and snapshot anyway, so chunks of an earlier
attempt could not be trusted (see ``main.initial_snapshot_handoff``).
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from zdtp_worker.contract.errors import ConfigError, DataError
from zdtp_worker.contract.spec import FullOptions, TableSpec, WorkerSpec
from zdtp_worker.full.catalog import read_table
from zdtp_worker.full.copy import copy_range
from zdtp_worker.full.postgres import PgSnapshotReader, PgTargetWriter, open_pair
from zdtp_worker.full.target_ddl import copy_sequences
from zdtp_worker.incremental.only import RELKIND_SQL, prefix
from zdtp_worker.pg.errors import classify
from zdtp_worker.pg.shape_read import read_shape

log = logging.getLogger(__name__)


async def _copy_table(src: PgSnapshotReader, tgt: PgTargetWriter, ts: TableSpec, opts: FullOptions) -> int:
    """Replace one target table's rows with the snapshot's, in one target transaction."""
    target = ts.target_name
    info = await read_table(src.conn, ts.source, key=ts.key)
    if info is None:
        raise ConfigError(f"source table {ts.source} does not exist")
    plan = await tgt.inspect(info, target)
    if not plan.exists:  # the stream creates missing target tables before the hand-off
        raise DataError(f"target table {target} does not exist")
    columns = list(plan.columns) or [c.name for c in info.copied]
    chunks = await src.plan_chunks(
        info, key_range=None, chunk_rows=opts.chunk_rows, chunk_bytes=opts.chunk_bytes
    )
    started = time.monotonic()
    rows = 0
    async with tgt.transaction():
        # This table's rows only: ONLY keeps a plain table's inheritance children (see .only).
        kind = await tgt.conn.fetchval(RELKIND_SQL.replace("%s", "$1"), target.qualified)
        await tgt.conn.execute(f"DELETE FROM {prefix(kind)}{target.qualified}")
        for chunk in chunks:
            if chunk.empty:
                continue
            stats = await copy_range(
                src, tgt, info=info, chunk=chunk, columns=columns, target_table=target, fmt=plan.copy_format
            )
            if opts.verify != "none" and stats.source_rows != stats.target_rows:
                raise DataError(
                    f"table {target} chunk {chunk.no}: source sent {stats.source_rows} rows,"
                    f" target stored {stats.target_rows}"
                )
            if opts.verify == "checksum":
                expected = await src.checksum(info, chunk, columns=columns)
                if await tgt.checksum(target, info, chunk, columns=columns) != expected:
                    raise DataError(f"table {target} chunk {chunk.no}: checksum mismatch")
            rows += stats.target_rows
    log.info(
        "initial copy: %s replaced by %s rows of %s (%d chunks, %.1fs)",
        target,
        rows,
        ts.source,
        len(chunks),
        time.monotonic() - started,
    )
    # Sequences are not transactional: at least the source's position, as a full copy leaves them.
    await copy_sequences(src.conn, tgt.conn, await read_shape(src.conn, info.oid), target=target)
    return rows


async def copy_tables_async(spec: WorkerSpec, *, source_dsn: str, target_dsn: str, snapshot: str) -> int:
    """Copy every table of ``spec`` under ``snapshot`` (table by table); return the rows copied."""
    src, tgt = await open_pair(source_dsn, target_dsn, snapshot=snapshot)
    try:
        total = 0
        for ts in spec.tables:
            try:
                total += await _copy_table(src, tgt, ts, spec.full)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                raise classify(exc, role="initial snapshot copy", what=f"table {ts.target_name}") from None
        return total
    finally:
        await src.close()
        await tgt.close()


def copy_tables(spec: WorkerSpec, *, source_dsn: str, target_dsn: str, snapshot: str) -> int:
    """Blocking form of :func:`copy_tables_async`."""
    return asyncio.run(
        copy_tables_async(spec, source_dsn=source_dsn, target_dsn=target_dsn, snapshot=snapshot)
    )
