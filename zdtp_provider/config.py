"""Sync-task configuration: one YAML file declares one sync task; this module validates it.

The model is the single source of truth for the file format: the DAG factory, the ``zdtp`` CLI
and the generated config reference in ``docs/`` all read it. Errors name the file, the field
path and the offending value, because they surface as Airflow import errors in the UI.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from zdtp_worker.contract.identifiers import IdentifierError, TablePattern, canonical, parse_qualified

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CONN_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,250}$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
# Task names end up in Kubernetes object names with a suffix; keep room for it.
MAX_NAME = 40


class SyncConfigError(ValueError):
    """A sync-task file is invalid. ``str()`` is one line: file, field, value, reason.

    Not the worker's ``zdtp_worker.contract.errors.ConfigError`` (a bad WorkerSpec in a pod).
    """


# Former name, kept for one release so DAG files importing it keep working.
ConfigError = SyncConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(_Strict):
    """Container resources for each worker pod (Kubernetes quantity strings)."""

    requests: dict[Literal["cpu", "memory", "ephemeral-storage"], str] = Field(
        default_factory=lambda: {"cpu": "250m", "memory": "256Mi"}
    )
    limits: dict[Literal["cpu", "memory", "ephemeral-storage"], str] = Field(
        default_factory=lambda: {"memory": "1Gi"}
    )

    @field_validator("requests", "limits")
    @classmethod
    def _quantities(cls, value: dict[str, str]) -> dict[str, str]:
        for key, quantity in value.items():
            if not _QUANTITY.match(str(quantity)):
                raise ValueError(f"{key}={quantity!r} is not a Kubernetes quantity (e.g. 250m, 512Mi)")
        return value


class Toleration(_Strict):
    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class PodOptions(_Strict):
    """Where and how worker pods are placed (passed through to the Pod/Job/Deployment)."""

    annotations: dict[str, str] = Field(default_factory=dict, description="Extra pod annotations.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Pod nodeSelector.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Pod tolerations.")
    service_account: str | None = Field(None, description="ServiceAccount of worker pods.")
    stream_logs: bool = Field(
        True,
        description="Follow worker pod logs into the Airflow task log (tasks fan-out). Turn off on "
        "KWOK-simulated nodes, whose log streams never end.",
    )
    host_network: bool = Field(
        False,
        description="Run worker pods in the node's network namespace (dev clusters whose databases "
        "listen on 127.0.0.1 only); needs a namespace whose Pod Security level allows it.",
    )


class SyncTaskConfig(_Strict):
    """One sync task: which tables move from which source to which target, and how."""

    name: Annotated[str, Field(description="Task name; DAG id is zdtp_<name>. DNS label, max 40.")]
    description: str = Field("", description="Shown as the DAG's documentation.")
    source_conn_id: str = Field(description="Airflow connection id of the source PostgreSQL.")
    target_conn_id: str = Field(description="Airflow connection id of the target PostgreSQL.")
    tables: list[str] = Field(
        default_factory=list,
        description="Explicit tables, 'schema.table' with SQL quoting: unquoted names fold to lower "
        'case, double-quote the others, e.g. sales."Order Items".',
    )
    include: list[str] = Field(
        default_factory=list,
        description="Glob patterns of 'schema.table' to add from the catalog (same quoting; the glob "
        "applies to each part).",
    )
    exclude: list[str] = Field(default_factory=list, description="Glob patterns to drop.")
    mode: Literal["full", "incremental", "full+incremental"] = Field(
        "full", description="full: copy and exit; incremental: stream changes; both: copy, then stream."
    )
    workers: Annotated[int, Field(ge=1, le=1000, description="Maximum parallel full-sync workers.")] = 4
    chunk_rows: Annotated[int, Field(ge=1, description="Rows per resumable chunk.")] = 250_000
    worker_retries: Annotated[
        int,
        Field(
            ge=0,
            le=10,
            description="Retries of a copy worker that crashed or was killed (fanout tasks: Airflow task "
            "retries of its pod; Jobs: backoffLimit, per index for indexed-job). The copy resumes from its "
            "last finished chunk; exit 65/78 (data/config error) is never retried.",
        ),
    ] = 2
    streams: Annotated[
        int | None,
        Field(
            ge=1,
            le=16,
            description="Parallel COPY streams per full-sync worker; a crash redoes at most one chunk "
            "per stream. Unset: chosen per worker from its biggest table and its CPU request (1-4).",
        ),
    ] = None
    fanout: Literal["tasks", "indexed-job", "job-per-worker", "queue", "queue-drain"] = Field(
        "tasks",
        description="tasks: one mapped Airflow task (pod) per worker; indexed-job: one Indexed Job; "
        "job-per-worker: one Job per worker (mapped task); queue: the task enqueues the chunks, one Job "
        "runs a pod per chunk (completions = chunks); queue-drain: one Job of `workers` pods drains the "
        "queue (see docs/batch-patterns.md).",
    )
    queue_backend: Literal["postgres", "redis"] = Field(
        "postgres",
        description="queue fan-outs: where the work queue lives: zdtp.work_queue in the target, or a Redis "
        "server named by `queue_conn_id` (docs/batch-patterns.md).",
    )
    queue_conn_id: str | None = Field(
        None,
        description="queue_backend redis: Airflow connection id (type redis) of the queue's Redis; its URL "
        "reaches the pods only through the task's credentials Secret (ZDTP_QUEUE_DSN_FILE).",
    )
    lease_seconds: Annotated[float, Field(gt=0)] = Field(
        60.0,
        description="queue fan-outs: seconds a pod's claim on a queue item lasts; a killed pod's item "
        "returns to the queue after this. Safe below a chunk's copy time: the item stays locked while "
        "it is copied, so a second pod never copies it too.",
    )
    schedule: str | None = Field(None, description="Cron expression or preset; none = on demand only.")
    schedule_on: Literal["airflow", "kubernetes"] = Field(
        "airflow",
        description="airflow: the DAG runs on `schedule`; kubernetes: the DAG applies a CronJob running "
        "the full copy on `schedule` (its runs: apply, suspend, resume, delete; see docs/batch-patterns.md).",
    )
    time_zone: str = Field("UTC", description="schedule_on kubernetes: the CronJob's IANA time zone.")
    starting_deadline_seconds: Annotated[int, Field(ge=10)] = Field(
        300, description="schedule_on kubernetes: a scheduled run missed by more is skipped, not caught up."
    )
    namespace: str = Field("zdtp", description="Kubernetes namespace of the workers.")
    image: str = Field("zdtp/worker:0.1.0", description="Worker container image.")
    resources: Resources = Field(default_factory=Resources)
    pod: PodOptions = Field(default_factory=PodOptions)
    verify: Literal["none", "count", "checksum"] = Field(
        "count",
        description="Check each chunk as it is copied (rows, or rows + checksum, source side under the "
        "chunk's snapshot vs target side in the writing transaction) and the run from those records: "
        "a source that keeps writing cannot fail it. checksum adds two hash passes per chunk.",
    )
    copy_mode: Literal["resume", "restart", "swap"] = Field(
        "resume", description="resume a run's chunks, restart clean, or swap in a staging copy."
    )
    set_replica_identity: bool = Field(
        False,
        description="CDC modes: for a table without a primary key but with a unique index on NOT NULL "
        "columns, let zdtp run ALTER TABLE ... REPLICA IDENTITY USING INDEX on the source (otherwise "
        "such a table is refused with that fix; zdtp never changes a replica identity unasked).",
    )
    allow_lossy_type_changes: bool = Field(
        False,
        description="CDC modes: follow a source column type change that may lose values (a narrowing, "
        "a scale down, timestamptz -> date...) by altering the target column with a cast and copying the "
        "values from the source again; otherwise the stream stops (exit 65) naming the column.",
    )
    kubernetes_conn_id: str = Field("kubernetes_default", description="Airflow Kubernetes connection id.")
    deferrable: bool = Field(
        True,
        description="Wait for worker pods, Jobs and rollouts in the triggerer (frees worker slots; "
        "needs a running triggerer). false = wait inside the task.",
    )
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = Field(
        None, description="libpq sslmode for both databases; none = each connection's own (libpq: prefer)."
    )
    tls_secret: str | None = Field(
        None,
        description="Secret with the files the connections' sslrootcert/sslcert/sslkey name (same "
        "file names), mounted into worker pods.",
    )
    owner: str = Field("zdtp", description="DAG owner.")
    tags: list[str] = Field(default_factory=list, description="Extra DAG tags.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if len(value) > MAX_NAME or not _DNS_LABEL.match(value):
            raise ValueError(
                f"must be a DNS-1123 label of at most {MAX_NAME} chars (lowercase letters, digits, '-')"
            )
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if len(value) > 63 or not _DNS_LABEL.match(value):
            raise ValueError("must be a DNS-1123 label (lowercase letters, digits, '-'; max 63)")
        return value

    @field_validator("tls_secret")
    @classmethod
    def _tls_secret(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 253 or not _DNS_SUBDOMAIN.match(value)):
            raise ValueError(
                "must be a Secret name (DNS-1123 subdomain: lowercase letters, digits, '-', '.')"
            )
        return value

    @field_validator("source_conn_id", "target_conn_id", "kubernetes_conn_id", "queue_conn_id")
    @classmethod
    def _conn_id(cls, value: str | None) -> str | None:
        if value is not None and not _CONN_ID.match(value):
            raise ValueError("must be an Airflow connection id (letters, digits, '_', '-', '.')")
        return value

    @field_validator("tables")
    @classmethod
    def _tables(cls, value: list[str]) -> list[str]:
        # Canonical form (quotes only where needed): what plans, checkpoints and logs print.
        out: list[str] = []
        for table in value:
            try:
                name = canonical(table)
            except IdentifierError as exc:
                raise ValueError(f"{table!r} is not 'schema.table' or 'table': {exc}") from None
            if name not in out:
                out.append(name)
        return out

    @field_validator("include", "exclude")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                TablePattern(pattern)
            except IdentifierError as exc:
                raise ValueError(f"{pattern!r} is not a 'schema.table' pattern: {exc}") from None
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is None or value.startswith("@"):
            return value
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a valid cron expression")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value):
            raise ValueError("must be a container image reference")
        return value

    @model_validator(mode="after")
    def _something_to_sync(self) -> SyncTaskConfig:
        if not self.tables and not self.include:
            raise ValueError("names no tables: give 'tables' and/or 'include' patterns")
        if self.source_conn_id == self.target_conn_id:
            raise ValueError("source_conn_id and target_conn_id must differ")
        if self.schedule_on == "kubernetes" and (self.mode != "full" or not self.schedule):
            raise ValueError(
                "schedule_on kubernetes runs a full copy on a CronJob: needs mode full and a schedule"
            )
        if (self.queue_backend == "redis") != bool(self.queue_conn_id):
            raise ValueError(
                "queue_backend redis needs queue_conn_id (an Airflow redis connection), and only it takes one"
            )
        macros = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
        schedule = self.schedule or ""
        if self.schedule_on == "kubernetes" and schedule.startswith("@") and schedule not in macros:
            raise ValueError(f"schedule_on kubernetes: a cron expression or one of {', '.join(macros)}")
        return self

    @property
    def dag_id(self) -> str:
        return f"zdtp_{self.name.replace('-', '_')}"

    def select_tables(self, catalog: list[str]) -> list[str]:
        """Tables to sync given the source catalog (canonical 'schema.table' names), explicit ones
        first. Patterns match each part of the real name, so quoting never gets in the way."""
        include = [TablePattern(p) for p in self.include]
        exclude = [TablePattern(p) for p in self.exclude]
        chosen = list(self.tables)
        for table in sorted(catalog):
            parts = parse_qualified(table)
            if any(p.matches(*parts) for p in include) and table not in chosen:
                chosen.append(table)
        return [t for t in chosen if not any(p.matches(*parse_qualified(t)) for p in exclude)]


def _describe(error: dict[str, Any], raw: Any) -> str:
    loc = [str(p) for p in error["loc"]]
    field = ".".join(loc) or "(file)"
    value: Any = raw
    for part in error["loc"]:
        try:
            value = value[int(part)] if isinstance(value, list) else value[part]
        except (KeyError, IndexError, TypeError, ValueError):
            value = error.get("input")
            break
    msg = error["msg"].removeprefix("Value error, ")
    shown = "" if error["type"] == "missing" else f" = {value!r}"
    return f"{field}{shown}: {msg}"


def parse_config(data: Any, *, origin: str) -> SyncTaskConfig:
    if not isinstance(data, dict):
        raise SyncConfigError(f"{origin}: expected a mapping of settings, got {type(data).__name__}")
    try:
        return SyncTaskConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(e, data) for e in exc.errors())
        raise SyncConfigError(f"{origin}: {problems}") from None


def load_config(path: str | Path) -> SyncTaskConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SyncConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise SyncConfigError(f"{path}:{where} invalid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_config(data, origin=str(path))
