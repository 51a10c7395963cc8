"""The database driver boundary of the worker: what the copy and stream engines ask of a database.

The engines (``full.chunk``/``full.tables``/``full.queue_run``/``full.main`` for the copy,
``incremental.loop`` for the stream) are written against these Protocols; PostgreSQL implements
them (``full.postgres`` with asyncpg, ``incremental.target`` with psycopg 3, psycopg2's
``ReplicationCursor`` and ``incremental.pgoutput``). A second database engine adds its own
implementations and an opener, not a second copy or stream engine.

Four roles:

- **catalog**        what a table looks like (:class:`Catalog`), on either side;
- **source reader**  a consistent read of the source: :class:`SnapshotReader` (the copy: plan
  chunks, stream a chunk's rows, checksum them) and :class:`ChangeReader` (the stream: raw
  replication messages, feedback);
- **change decoder** raw replication message → change objects (:class:`ChangeDecoder`);
- **target writer**  transactions, DDL, rows and zdtp's own state in the target:
  :class:`TargetWriter` (copy; state = :class:`RunState` + :class:`WorkQueue`) and
  :class:`ChangeWriter` (stream; state = the applied LSN, committed with the rows).

Rows cross the boundary in the driver's own wire format (``fmt``: COPY binary or text) and are
never decoded in Python on the copy's hot path: reader and writer of one engine must agree on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from zdtp_worker.contract.spec import KeyRange, TableName
    from zdtp_worker.full.catalog import TableInfo
    from zdtp_worker.full.checkpoints import DoneChunk, Plan
    from zdtp_worker.full.chunking import Chunk
    from zdtp_worker.full.queue import Item
    from zdtp_worker.full.schema import CopyFormat, TargetPlan
    from zdtp_worker.incremental.batch import Batch
    from zdtp_worker.incremental.pgoutput import Value
    from zdtp_worker.incremental.staging import Shape

Sink = Callable[[bytes], Awaitable[None]]


# -- catalog -------------------------------------------------------------------------------------
class Catalog(Protocol):
    async def describe(self, table: TableName) -> TableInfo | None:
        """Columns, types, primary key and size estimate of a table; ``None`` if it does not exist."""
        ...


# -- copy engine ---------------------------------------------------------------------------------
class SnapshotReader(Catalog, Protocol):
    """One source session inside the run's snapshot (every read sees the same data)."""

    async def export_snapshot(self) -> str:
        """An id other sessions can join (``open_pair(snapshot=...)``) to read the same snapshot."""
        ...

    async def plan_chunks(
        self, info: TableInfo, *, key_range: KeyRange | None, chunk_rows: int, chunk_bytes: int | None
    ) -> list[Chunk]:
        """Split the table (or its key range) into bounded key ranges."""
        ...

    async def copy_out(
        self, info: TableInfo, chunk: Chunk, *, columns: list[str], fmt: CopyFormat, sink: Sink
    ) -> int:
        """Stream ``columns`` of the chunk's rows to ``sink`` in ``fmt``; return the rows sent."""
        ...

    async def checksum(self, info: TableInfo, chunk: Chunk, *, columns: list[str]) -> tuple[int, Decimal]:
        """Rows and order-independent checksum of the chunk's read range."""
        ...

    async def close(self) -> None: ...


class RunState(Protocol):
    """Chunk plans and finished chunks of full runs, stored in the target."""

    async def bootstrap(self) -> None: ...
    async def forget_run(self, run_id: str, target: str, *, part: str = "") -> None: ...
    async def load_plan(self, run_id: str, target: str, *, part: str = "") -> Plan | None: ...
    async def save_plan(
        self, *, run_id: str, target: str, part: str, source: str, copy_table: str, chunks: list[Chunk]
    ) -> Plan: ...
    async def done_chunks(self, run_id: str, target: str, *, part: str = "") -> dict[int, DoneChunk]: ...
    async def is_done(self, run_id: str, target: str, chunk_no: int, *, part: str = "") -> bool: ...
    async def record_chunk(
        self,
        *,
        run_id: str,
        target: str,
        part: str,
        chunk_no: int,
        rows: int,
        nbytes: int,
        checksum: Decimal | None,
        worker: str,
        seconds: float,
    ) -> None: ...
    async def mark_swapped(self, run_id: str, target: str, *, part: str = "") -> None: ...


class WorkQueue(Protocol):
    """Work items (one chunk each) leased to any number of workers, stored in the target."""

    async def bootstrap(self) -> None: ...
    async def enqueue(self, queue: str, items: list[tuple[str, dict[str, Any]]]) -> int: ...
    async def claim(self, queue: str, *, owner: str, lease_seconds: float) -> Item | None: ...
    async def hold(self, item: Item, *, owner: str) -> bool: ...
    async def complete(self, item: Item) -> None: ...
    async def open_items(self, queue: str) -> tuple[int, float | None]: ...


class TargetWriter(Catalog, Protocol):
    """One target session: DDL, rows and zdtp's state, in transactions the engine opens."""

    state: RunState
    queue: WorkQueue

    def transaction(self) -> AbstractAsyncContextManager[object]:
        """Everything inside commits together (a chunk's rows with its checkpoint) or not at all."""
        ...

    async def inspect(self, info: TableInfo, table: TableName) -> TargetPlan:
        """Read-only: can ``table`` take ``info``'s rows, and in which format? Changes nothing."""
        ...

    async def ensure_table(self, info: TableInfo, table: TableName) -> TargetPlan: ...
    async def ensure_staging(self, info: TableInfo, table: TableName, staging: TableName) -> TargetPlan: ...
    async def swap_in(self, *, staging: TableName, target: TableName) -> None: ...
    async def delete_range(self, table: TableName, info: TableInfo, chunk: Chunk) -> None: ...
    async def copy_in(
        self, table: TableName, columns: list[str], *, fmt: CopyFormat, pieces: AsyncIterator[bytes]
    ) -> int:
        """Write the rows arriving in ``pieces`` (``fmt``); return the rows stored."""
        ...

    async def checksum(
        self, table: TableName, info: TableInfo, chunk: Chunk, *, columns: list[str]
    ) -> tuple[int, Decimal]:
        """Rows and checksum of the chunk's (delete) range in ``table``."""
        ...

    async def close(self) -> None: ...


# -- stream engine -------------------------------------------------------------------------------
class ReplicationMessage(Protocol):
    payload: bytes


class ChangeReader(Protocol):
    """The source's change stream (psycopg2's ``ReplicationCursor`` fits as it is)."""

    @property
    def wal_end(self) -> int: ...
    def read_message(self) -> ReplicationMessage | None:
        """The next raw message, ``None`` when nothing is buffered (never blocks)."""
        ...

    def send_feedback(self, *, flush_lsn: int) -> None:
        """The target durably holds everything up to ``flush_lsn``: the source may forget it."""
        ...

    def fileno(self) -> int:
        """For ``select``: readable when a message may be waiting."""
        ...


class ChangeDecoder(Protocol):
    """Raw message → a change object (Begin, Commit, Relation, Insert, Update, Delete, Truncate)."""

    def __call__(self, payload: bytes) -> object: ...

    def insert(self, payload: bytes) -> tuple[int, list[Value]] | None:
        """Fast path for the most frequent message: (relation id, new row) of an insert, without
        building a message object; ``None`` for any other message."""
        ...


class ChangeWriter(Protocol):
    """The target of a stream: lease, applied position and set-based apply, in one session."""

    stream: str
    commit_lsn: int
    end_lsn: int

    def try_lease(self) -> bool: ...
    def load_state(self) -> tuple[int, int]: ...
    def ping(self) -> None: ...
    def advance(self, end_lsn: int) -> None:
        """Store a position past which the source sent nothing for us (a keepalive's WAL end)."""
        ...

    def apply(self, batch: Batch, shapes: dict[int, Shape]) -> int:
        """Write a batch of compacted changes into the open transaction (no commit)."""
        ...

    def move_row(self, shape: Shape, old_key: tuple[Value, ...], new: list[Value]) -> None: ...
    def truncate(self, names: list[TableName]) -> None: ...
    def commit(
        self, *, commit_lsn: int, end_lsn: int, commit_time: datetime | None, transactions: int, changes: int
    ) -> None:
        """Store the applied position and commit the open transaction with it."""
        ...

    def rollback(self) -> None: ...
    def close(self) -> None: ...
