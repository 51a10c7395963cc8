"""WorkerSpecs as workloads receive them: coercion of operator input, and the one builder of the
incremental (stream) spec.

Full specs come from the planner (:func:`zdtp_provider.planner.plan_workers`); the stream spec is
built here only, so the ``prepare_stream`` task, ``zdtp render`` and the Deployment agree on run
id, tables and names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from zdtp_provider.config import SyncTaskConfig
from zdtp_provider.workload.errors import WorkloadError
from zdtp_worker.contract.spec import WorkerSpec

SpecInput = WorkerSpec | Mapping[str, Any] | str

# A stream outlives DAG runs: a per-run id would roll its pod on every run.
STREAM_RUN_ID = "stream"


def stream_run_id(config: SyncTaskConfig) -> str:
    """The fixed run id of a sync task's stream (generated DAGs have always used this one)."""
    return f"{config.name}-stream"


def resolve_spec(spec: SpecInput, *, mode: str, run_id: str | None, field: str = "spec") -> WorkerSpec:
    """A validated WorkerSpec from a model, dict or JSON string; ``run_id`` fills a missing one.

    Defaulting the run id to Airflow's keeps a retry of the same DAG run resuming the same copy
    (the worker keys its checkpoints on it), while a new DAG run starts fresh.
    """
    if isinstance(spec, WorkerSpec):
        data: Any = spec.model_dump(by_alias=True)
    elif isinstance(spec, str):
        try:
            data = json.loads(spec)
        except ValueError as exc:
            raise WorkloadError(f"{field}: not valid JSON: {exc}") from None
    elif isinstance(spec, Mapping):
        data = dict(spec)
    else:
        raise WorkloadError(f"{field}: expected a WorkerSpec, dict or JSON string, got {type(spec).__name__}")
    if not isinstance(data, dict):
        raise WorkloadError(f"{field}: expected a JSON object")
    data.setdefault("mode", mode)
    if run_id and not data.get("run_id"):
        data["run_id"] = run_id
    try:
        parsed = WorkerSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        # Name the offending value too (like a sync-task file's error): the message is all a
        # user sees of a rejected spec.
        shown = "" if first["type"] == "missing" else f" = {first['input']!r}"
        raise WorkloadError(
            f"{field}.{where}{shown}: {first['msg']}" if where else f"{field}{shown}: {first['msg']}"
        ) from None
    if parsed.mode != mode:
        raise WorkloadError(
            f"{field}.mode: this operator runs {mode!r} workers, the spec says {parsed.mode!r}"
        )
    return parsed


def resolve_specs(specs: Sequence[SpecInput] | str, *, mode: str, run_id: str) -> list[WorkerSpec]:
    """Several specs (an Indexed Job's), from a list or a JSON array; may be empty."""
    if isinstance(specs, str):
        try:
            specs = json.loads(specs)
        except ValueError as exc:
            raise WorkloadError(f"specs: not valid JSON: {exc}") from None
    if not isinstance(specs, (list, tuple)):
        raise WorkloadError(f"specs: expected a list of worker specs, got {type(specs).__name__}")
    return [resolve_spec(s, mode=mode, run_id=run_id, field=f"specs[{i}]") for i, s in enumerate(specs)]


def stream_spec(config: SyncTaskConfig, tables: Sequence[str], **incremental: Any) -> WorkerSpec:
    """The incremental WorkerSpec of a sync task streaming ``tables`` (resolved from the catalog).

    Everything the stream takes from the sync task is filled in here (include/exclude patterns,
    so the worker reports matching tables it does not stream; ``set_replica_identity``,
    ``allow_lossy_type_changes``), so the
    ``prepare_stream`` task and ``zdtp render`` cannot disagree. ``incremental`` overrides
    IncrementalOptions fields (slot, publication...); left out, the worker derives the slot and
    publication names from the task name.
    """
    options: dict[str, Any] = {"include": list(config.include), "exclude": list(config.exclude)}
    for option in ("set_replica_identity", "allow_lossy_type_changes"):
        if hasattr(config, option):
            options[option] = getattr(config, option)
    options.update({k: v for k, v in incremental.items() if v is not None})
    return WorkerSpec(
        mode="incremental",
        task=config.name,
        run_id=stream_run_id(config),
        tables=[{"source": t} for t in tables],
        incremental=options,
    )
