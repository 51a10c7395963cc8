"""PostgreSQL behind the copy engine's driver boundary (:mod:`zdtp_worker.drivers`), on asyncpg.

:func:`open_pair` opens a source session inside the run's snapshot and a target session, and
wraps them as :class:`PgSnapshotReader` / :class:`PgTargetWriter`. The SQL lives in the modules
these classes delegate to (``catalog``, ``chunking``, ``sqlparts``, ``schema``, ``checkpoints``,
``queue``, ``verify``); the chunk engine (``chunk``, ``copy``) only sees the Protocols.

Table preparation (``tables``, ``queue_run``: catalog, target DDL, finalize, sequences) still
works on the sessions themselves (``.conn``); moving it behind the Protocols is the next step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Any

import asyncpg

from zdtp_worker.contract.spec import KeyRange, TableName
from zdtp_worker.drivers import Sink
from zdtp_worker.full import checkpoints, queue, schema
from zdtp_worker.full.catalog import TableInfo, read_table
from zdtp_worker.full.chunking import Chunk, plan_table
from zdtp_worker.full.schema import CopyFormat, TargetPlan
from zdtp_worker.full.session import close, connect_pair
from zdtp_worker.full.sqlparts import range_clause
from zdtp_worker.full.verify import range_checksum, target_sum_columns


def _read_where(info: TableInfo, chunk: Chunk) -> str:
    return range_clause(info.key_columns, chunk.lower, chunk.upper, upper_inclusive=chunk.upper_inclusive)


def _delete_where(info: TableInfo, chunk: Chunk) -> str:
    return range_clause(
        info.key_columns, chunk.del_lower, chunk.del_upper, upper_inclusive=chunk.del_upper_inclusive
    )


def _rows(status: str) -> int:
    # "COPY 123"
    try:
        return int(status.rsplit(" ", 1)[-1])
    except (ValueError, AttributeError):
        return -1


class PgSnapshotReader:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn  # inside a REPEATABLE READ READ ONLY transaction (the snapshot)

    async def describe(self, table: TableName) -> TableInfo | None:
        return await read_table(self.conn, table)

    async def export_snapshot(self) -> str:
        return await self.conn.fetchval("SELECT pg_export_snapshot()")

    async def plan_chunks(
        self, info: TableInfo, *, key_range: KeyRange | None, chunk_rows: int, chunk_bytes: int | None
    ) -> list[Chunk]:
        return await plan_table(
            self.conn, info, key_range=key_range, chunk_rows=chunk_rows, chunk_bytes=chunk_bytes
        )

    async def copy_out(
        self, info: TableInfo, chunk: Chunk, *, columns: list[str], fmt: CopyFormat, sink: Sink
    ) -> int:
        select_sql = (
            f"SELECT {info.select_list(columns)} FROM {info.from_sql} WHERE {_read_where(info, chunk)}"
        )
        # Read the range with a bitmap heap scan (pages in physical order, one pin per page)
        # rather than a plain index scan (one index probe + heap pin per row): measured ~1.5x
        # faster for 250k-row chunks, and far better for random keys such as uuid.
        await self.conn.execute("SET enable_indexscan = off")
        status = await self.conn.copy_from_query(select_sql, output=sink, format=fmt)
        await self.conn.execute("RESET enable_indexscan")  # planning wants index scans
        return _rows(status)

    async def checksum(self, info: TableInfo, chunk: Chunk, *, columns: list[str]) -> tuple[int, Decimal]:
        where = _read_where(info, chunk) if not chunk.empty else "FALSE"
        return await range_checksum(self.conn, info.from_sql, columns, where)

    async def close(self) -> None:
        await close(self.conn)


class PgRunState:
    """:class:`~zdtp_worker.drivers.RunState` in the target's ``zdtp`` schema (``checkpoints``)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def bootstrap(self) -> None:
        await checkpoints.bootstrap(self.conn)

    async def forget_run(self, run_id: str, target: str, *, part: str = "") -> None:
        await checkpoints.forget_run(self.conn, run_id, target, part=part)

    async def load_plan(self, run_id: str, target: str, *, part: str = "") -> checkpoints.Plan | None:
        return await checkpoints.load_plan(self.conn, run_id, target, part=part)

    async def save_plan(
        self, *, run_id: str, target: str, part: str, source: str, copy_table: str, chunks: list[Chunk]
    ) -> checkpoints.Plan:
        return await checkpoints.save_plan(
            self.conn,
            run_id=run_id,
            target=target,
            part=part,
            source=source,
            copy_table=copy_table,
            chunks=chunks,
        )

    async def done_chunks(
        self, run_id: str, target: str, *, part: str = ""
    ) -> dict[int, checkpoints.DoneChunk]:
        return await checkpoints.done_chunks(self.conn, run_id, target, part=part)

    async def is_done(self, run_id: str, target: str, chunk_no: int, *, part: str = "") -> bool:
        return await checkpoints.is_done(self.conn, run_id, target, chunk_no, part=part)

    async def record_chunk(self, **fields: Any) -> None:
        """Keyword arguments as in :meth:`zdtp_worker.drivers.RunState.record_chunk`."""
        await checkpoints.record_chunk(self.conn, **fields)

    async def mark_swapped(self, run_id: str, target: str, *, part: str = "") -> None:
        await checkpoints.mark_swapped(self.conn, run_id, target, part=part)


class PgWorkQueue:
    """:class:`~zdtp_worker.drivers.WorkQueue` in the target's ``zdtp`` schema (``queue``)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def bootstrap(self) -> None:
        await queue.bootstrap(self.conn)

    async def enqueue(self, name: str, items: list[tuple[str, dict[str, Any]]]) -> int:
        return await queue.enqueue(self.conn, name, items)

    async def claim(self, name: str, *, owner: str, lease_seconds: float) -> queue.Item | None:
        return await queue.claim(self.conn, name, owner=owner, lease_seconds=lease_seconds)

    async def hold(self, item: queue.Item, *, owner: str) -> bool:
        return await queue.hold(self.conn, item, owner=owner)

    async def complete(self, item: queue.Item) -> None:
        await queue.complete(self.conn, item)

    async def open_items(self, name: str) -> tuple[int, float | None]:
        return await queue.open_items(self.conn, name)


class PgTargetWriter:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.state = PgRunState(conn)
        self.queue = PgWorkQueue(conn)
        self._target_tables: dict[str, TableInfo | None] = {}  # for checksum casts, per table

    async def describe(self, table: TableName) -> TableInfo | None:
        return await read_table(self.conn, table)

    def transaction(self) -> AbstractAsyncContextManager[object]:
        return self.conn.transaction()

    async def inspect(self, info: TableInfo, table: TableName) -> TargetPlan:
        return await schema.inspect_target(self.conn, info, table)

    async def ensure_table(self, info: TableInfo, table: TableName) -> TargetPlan:
        return await schema.ensure_target_table_async(self.conn, info, table)

    async def ensure_staging(self, info: TableInfo, table: TableName, staging: TableName) -> TargetPlan:
        return await schema.ensure_staging_table(self.conn, info, table, staging)

    async def swap_in(self, *, staging: TableName, target: TableName) -> None:
        await schema.swap_in(self.conn, staging=staging, target=target)

    async def _target(self, table: TableName) -> TableInfo | None:
        key = table.qualified
        if key not in self._target_tables:  # the shape does not change during a run
            self._target_tables[key] = await read_table(self.conn, table)
        return self._target_tables[key]

    async def _from(self, table: TableName) -> str:
        """``ONLY`` the target table unless it is partitioned: a table other tables INHERIT from
        holds only its own rows; its children's rows in the same key range are not this chunk's."""
        target = await self._target(table)
        return target.from_sql if target is not None else table.qualified

    async def delete_range(self, table: TableName, info: TableInfo, chunk: Chunk) -> None:
        await self.conn.execute(f"DELETE FROM {await self._from(table)} WHERE {_delete_where(info, chunk)}")

    async def copy_in(
        self, table: TableName, columns: list[str], *, fmt: CopyFormat, pieces: AsyncIterator[bytes]
    ) -> int:
        status = await self.conn.copy_to_table(
            table.name,
            schema_name=table.schema_,
            columns=columns,  # asyncpg quotes the names
            source=pieces,
            format=fmt,
        )
        return _rows(status)

    async def checksum(
        self, table: TableName, info: TableInfo, chunk: Chunk, *, columns: list[str]
    ) -> tuple[int, Decimal]:
        """Rows and checksum of the chunk's delete range in ``table``, each column read as the
        source's type (``info``) so an allowed widening compares equal."""
        cols = target_sum_columns(info, await self._target(table), columns)
        return await range_checksum(self.conn, await self._from(table), cols, _delete_where(info, chunk))

    async def close(self) -> None:
        await close(self.conn)


async def open_pair(
    source_dsn: str, target_dsn: str, *, snapshot: str | None
) -> tuple[PgSnapshotReader, PgTargetWriter]:
    """A source session in a REPEATABLE READ snapshot (``snapshot``: join that one) and a target session."""
    src, tgt = await connect_pair(source_dsn, target_dsn, snapshot=snapshot)
    return PgSnapshotReader(src), PgTargetWriter(tgt)
