"""WorkerSpec: the one contract between the planner (Airflow side) and the worker (container side).

The planner builds it, the operator passes it to the pod as JSON (env ``ZDTP_WORKER_SPEC`` or a
mounted file), the worker validates it on start. It never holds credentials: those come from a
Secret as ``ZDTP_SOURCE_DSN`` / ``ZDTP_TARGET_DSN`` (or ``*_FILE``). Versioned so an old worker
image refuses a spec it does not understand instead of misreading it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from zdtp_worker.contract.identifiers import (
    MAX_IDENT_BYTES,
    IdentifierError,
    parse_qualified,
    render_qualified,
    sql_qualified,
)

SPEC_VERSION = 1
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_ident(value: str, what: str) -> str:
    """Any name PostgreSQL can store: non-empty, no NUL, at most 63 bytes (never truncated)."""
    if not value or "\x00" in value or len(value.encode()) > MAX_IDENT_BYTES:
        raise ValueError(
            f"{what} {value!r} is not a PostgreSQL identifier (1 to {MAX_IDENT_BYTES} bytes, no NUL)"
        )
    return value


class TableName(_Model):
    """A schema-qualified table, any identifier PostgreSQL allows.

    Given as ``{"schema": ..., "name": ...}`` (exact names; what the planner emits) or as text with
    SQL quoting rules (``sales."Order Items"``, ``orders`` → ``public.orders``; see
    :mod:`zdtp_worker.contract.identifiers`). ``str()`` is the canonical text form, which parses
    back to the same table; ``qualified`` is the SQL form.
    """

    schema_: str = Field("public", alias="schema")
    name: str

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                schema, name = parse_qualified(value)
            except IdentifierError as exc:
                raise ValueError(str(exc)) from None
            return {"schema": schema, "name": name}
        return value

    @field_validator("schema_", "name")
    @classmethod
    def _ident(cls, v: str) -> str:
        return _check_ident(v, "identifier")

    @property
    def qualified(self) -> str:
        return sql_qualified(self.schema_, self.name)

    def __str__(self) -> str:
        return render_qualified(self.schema_, self.name)


class KeyRange(_Model):
    """Half-open primary-key range ``[lower, upper)``; ``None`` means unbounded on that side.

    Values are lists (one item per PK column) of JSON scalars; the worker casts them to the
    column types. Unbounded ends are only ever given by a planner that knows the table's extent
    at snapshot time; the worker bounds its own chunks.
    """

    lower: list[Any] | None = None
    upper: list[Any] | None = None


class TableSpec(_Model):
    source: TableName
    target: TableName | None = None
    key_range: KeyRange | None = None
    # The columns chunks and key ranges are cut by, chosen by the planner: the primary key, or a
    # unique index on NOT NULL columns when the table has none. None: the worker uses the
    # primary key (specs written before the planner chose keys).
    key: tuple[str, ...] | None = None
    # Copy a table without a primary key (or ``key``) as one chunk (no resume inside it).
    allow_single_chunk: bool = False

    @field_validator("key")
    @classmethod
    def _key(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is not None:
            if not v:
                raise ValueError("key names no column (leave it out and set allow_single_chunk instead)")
            for col in v:
                _check_ident(col, "key column")
        return v

    @property
    def target_name(self) -> TableName:
        return self.target or self.source


class FullOptions(_Model):
    copy_mode: Literal["resume", "restart", "swap"] = "resume"
    chunk_rows: Annotated[int, Field(gt=0)] = 250_000
    chunk_bytes: Annotated[int, Field(gt=0)] | None = None
    verify: Literal["none", "count", "checksum"] = "count"
    # Work-queue patterns: take one item and exit, or drain until the queue is empty.
    queue: str | None = None
    queue_mode: Literal["one", "drain"] = "drain"
    # Where the queue lives: the target's zdtp.work_queue, or Redis (URL from ZDTP_QUEUE_DSN[_FILE]).
    queue_backend: Literal["postgres", "redis"] = "postgres"
    # Seconds a taken queue item stays leased; after that a dead worker's item returns to the queue.
    lease_seconds: Annotated[float, Field(gt=0)] = 60.0
    # Concurrent chunk pipelines inside one worker (each a source + target session, all reading
    # one shared snapshot). Table mode only; a queue is parallelised by running more workers.
    # A crash redoes at most ``streams`` chunks (one per stream), hence the default of 1.
    streams: Annotated[int, Field(gt=0, le=16)] = 1
    # Exported snapshot id (pg_export_snapshot) to copy under, for a gap-free CDC hand-off.
    snapshot: str | None = None
    progress_interval_seconds: Annotated[float, Field(gt=0)] = 5.0


class IncrementalOptions(_Model):
    slot: str | None = None  # default derived from task name
    publication: str | None = None  # default derived from task name
    batch_max_changes: Annotated[int, Field(gt=0)] = 10_000
    batch_max_seconds: Annotated[float, Field(gt=0)] = 0.5
    health_port: Annotated[int, Field(gt=0, lt=65536)] = 8080
    ready_max_lag_seconds: Annotated[float, Field(gt=0)] = 60.0
    initial_snapshot: bool = False
    # A table without a primary key but with a unique index on NOT NULL columns: let zdtp set
    # REPLICA IDENTITY USING INDEX on the source (never done unless asked).
    set_replica_identity: bool = False
    # Follow a source column type change that is not a safe widening (values are copied again).
    allow_lossy_type_changes: bool = False
    # The sync's include/exclude patterns: tables matching them but not streamed are reported.
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)


class WorkerSpec(_Model):
    version: Literal[1] = SPEC_VERSION
    mode: Literal["full", "incremental"]
    task: str  # sync task name, DNS-1123 label
    run_id: str = Field(min_length=1, max_length=200)
    worker: str = "w0"
    tables: list[TableSpec] = Field(default_factory=list)
    full: FullOptions = Field(default_factory=FullOptions)
    incremental: IncrementalOptions = Field(default_factory=IncrementalOptions)

    @field_validator("task")
    @classmethod
    def _task_name(cls, v: str) -> str:
        if not _DNS_LABEL.match(v):
            raise ValueError(f"task {v!r} must be a DNS-1123 label (lowercase letters, digits, '-'; max 63)")
        return v

    @model_validator(mode="after")
    def _needs_work(self) -> WorkerSpec:
        if not self.tables and not (self.mode == "full" and self.full.queue):
            raise ValueError("spec lists no tables (and names no queue)")
        return self

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_defaults=False)
