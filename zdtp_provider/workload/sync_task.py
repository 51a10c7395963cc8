"""A sync task's workloads, as its generated DAG runs them: the task ids, the per-kind settings
the DAG factory passes, and :func:`render_sync_task`, which ``zdtp render`` prints.

The DAG factory imports the same ids and settings, so a rendered object carries the name, labels
and spec the DAG's operator will give it (same run id, same task instance identity).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from zdtp_provider.config import SyncTaskConfig
from zdtp_provider.workload.options import WorkloadOptions, config_kwargs, options_kwargs
from zdtp_provider.workload.render import Rendered, render_deployment, render_indexed_job, render_pod
from zdtp_provider.workload.specs import stream_spec
from zdtp_worker.contract.spec import WorkerSpec

PLAN_TASK = "plan"
COPY_TASK = "copy"
VERIFY_TASK = "verify"
PREPARE_STREAM_TASK = "prepare_stream"
STREAM_TASK = "stream"

# The first try of a task instance: what a normal run creates.
FIRST_TRY = 1
UNMAPPED = -1


def indexed_settings(config: SyncTaskConfig) -> dict[str, Any]:
    """IndexedFullSyncJobOperator arguments of the ``copy`` task (indexed-job fan-out)."""
    return {"parallelism": config.workers, "retries_per_index": 1}


def owner_key(dag_id: str, task_id: str, map_index: int = UNMAPPED) -> str:
    """A task instance's identity as Job operators label their Jobs (not the try)."""
    return f"{dag_id}.{task_id}.{map_index}"


def sync_task_options(config: SyncTaskConfig) -> WorkloadOptions:
    return WorkloadOptions.from_kwargs(**options_kwargs(config_kwargs(config)))


def render_sync_task(
    config: SyncTaskConfig,
    *,
    run_id: str,
    full_specs: Sequence[WorkerSpec] = (),
    stream_tables: Sequence[str] = (),
    dsns: Mapping[str, str] | None = None,
) -> list[Rendered]:
    """The workloads one run of ``config``'s DAG creates: copy workers, then the stream.

    ``full_specs`` is the plan (the ``plan`` task's output for this run), ``stream_tables`` the
    tables ``prepare_stream`` resolved from the catalog.
    """
    options = sync_task_options(config)
    out: list[Rendered] = []
    if config.mode != "incremental" and full_specs:
        if config.fanout == "indexed-job":
            out.append(
                render_indexed_job(
                    options,
                    list(full_specs),
                    namespace=config.namespace,
                    owner=owner_key(config.dag_id, COPY_TASK),
                    run_id=run_id,
                    dsns=dsns,
                    active_deadline_seconds=None,
                    **indexed_settings(config),
                )
            )
        else:
            out.extend(
                render_pod(
                    options,
                    spec,
                    namespace=config.namespace,
                    run_id=run_id,
                    task_id=COPY_TASK,
                    try_number=FIRST_TRY,
                    dsns=dsns,
                )
                for spec in full_specs
            )
    if config.mode != "full":
        spec = stream_spec(config, stream_tables)
        out.append(render_deployment(options, spec, namespace=config.namespace, dsns=dsns))
    return out
