"""A sync task's workloads, as its generated DAG runs them: the task ids, the per-kind settings
the DAG factory passes, and :func:`render_sync_task`, which ``zdtp render`` prints.

The DAG factory imports the same ids and settings, so a rendered object carries the name, labels
and spec the DAG's operator will give it (same run id, same task instance identity).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from zdtp_provider.config import SyncTaskConfig
from zdtp_provider.workload.batch import is_batch, render_batch_copy, without_queue
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
    return {"parallelism": config.workers, "retries_per_index": config.worker_retries}


def queue_settings(config: SyncTaskConfig) -> dict[str, Any]:
    """QueueFullSyncJobOperator arguments of the ``copy`` task (queue / queue-drain fan-outs)."""
    return {
        "parallelism": config.workers,
        "pod_per_item": config.fanout == "queue",
        "enqueue": True,
        "queue_backend": config.queue_backend,
        "queue_conn_id": config.queue_conn_id,
        "job_retries": config.worker_retries,
    }


def owner_key(dag_id: str, task_id: str, map_index: int = UNMAPPED) -> str:
    """A task instance's identity as Job operators label their Jobs (not the try)."""
    return f"{dag_id}.{task_id}.{map_index}"


def pod_task_labels(*, dag_id: str, task_id: str, run_id: str, map_index: int, try_number: int) -> dict:
    """The task-instance labels KubernetesPodOperator puts on its pod to find it again (same
    keys and value sanitising as KPO's, so a rendered pod carries them too)."""
    from airflow.providers.cncf.kubernetes.pod_generator import make_safe_label_value

    labels = {"dag_id": dag_id, "task_id": task_id, "run_id": run_id, "kubernetes_pod_operator": "True"}
    if map_index >= 0:
        labels["map_index"] = str(map_index)
    labels["try_number"] = str(try_number)
    return {k: make_safe_label_value(v) for k, v in labels.items()}


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
    copy = config.mode != "incremental" and bool(full_specs)
    if copy and is_batch(config):
        owners = [owner_key(config.dag_id, COPY_TASK, i) for i in (UNMAPPED, *range(len(full_specs)))]
        out += render_batch_copy(config, options, run_id=run_id, specs=full_specs, dsns=dsns, owners=owners)
    # The queue's Redis URL (queue_conn_id) is for the queue Jobs only: no other worker gets it.
    dsns = without_queue(dsns)
    if copy and not is_batch(config):
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
            for map_index, spec in enumerate(full_specs):
                pod = render_pod(
                    options,
                    spec,
                    namespace=config.namespace,
                    run_id=run_id,
                    task_id=COPY_TASK,
                    try_number=FIRST_TRY,
                    dsns=dsns,
                )
                pod.workload.metadata.labels.update(
                    pod_task_labels(
                        dag_id=config.dag_id,
                        task_id=COPY_TASK,
                        run_id=run_id,
                        map_index=map_index,
                        try_number=FIRST_TRY,
                    )
                )
                out.append(pod)
    if config.mode != "full":
        spec = stream_spec(config, stream_tables)
        out.append(render_deployment(options, spec, namespace=config.namespace, dsns=dsns))
    return out
