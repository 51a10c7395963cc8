"""The copy task's Jobs for the batch fan-outs, as ``zdtp render`` shows them (the DAG's
operators render the same objects at run time through the same builders):

* ``job-per-worker`` — one Job per planned worker (the mapped ``copy`` task's map index *i*);
* ``queue`` — the enqueue Job (``full --enqueue``), then one Job with a pod per chunk
  (``completions`` = the chunks the enqueue pod reports at run time; rendered here as one per
  planned worker, since only the worker image can plan chunks);
* ``queue-drain`` — the enqueue Job, then one Job of ``workers`` pods draining the queue;
* ``schedule_on: kubernetes`` (any fan-out) — the CronJob whose Job copies the plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zdtp_provider.config import SyncTaskConfig
from zdtp_provider.k8s.cronjob import cron_job, cron_job_name
from zdtp_provider.k8s.secret import QUEUE_KEY
from zdtp_provider.workload.options import WorkloadOptions
from zdtp_provider.workload.render import Rendered, render_job, render_queue_job
from zdtp_worker.contract.envelope import full_args
from zdtp_worker.contract.spec import WorkerSpec
from zdtp_worker.control.queue import queue_name

BATCH_FANOUTS = ("job-per-worker", "queue", "queue-drain")


def is_batch(config: SyncTaskConfig) -> bool:
    """Is the copy rendered here (not by the tasks/indexed-job path of ``render_sync_task``)?"""
    return config.fanout in BATCH_FANOUTS or config.schedule_on == "kubernetes"


JOB_RETRIES = 2  # FullSyncJobOperator's default job_retries
ENQUEUE_WORKER = "enqueue"
QUEUE_WORKER = "queue"


def without_queue(dsns: Mapping[str, str] | None) -> dict[str, str] | None:
    """``dsns`` less the queue's Redis URL: only a queue fan-out's enqueue and work Jobs get it."""
    return None if dsns is None else {k: v for k, v in dsns.items() if k != QUEUE_KEY}


def queue_spec(specs: Sequence[WorkerSpec], *, queue: str | None, backend: str, worker: str) -> WorkerSpec:
    """One spec for the whole plan, the queue set: every planned table once, whole. (The planner
    splits a big table into key ranges only to balance workers; on a queue its chunks are the
    unit of work, so the ranges are joined again.)"""
    data = specs[0].model_dump(mode="json", by_alias=True)
    data["worker"] = worker
    tables: dict[str, dict[str, Any]] = {}
    for table in (t for s in specs for t in s.tables):
        tables.setdefault(
            str(table.target_name), {**table.model_dump(mode="json", by_alias=True), "key_range": None}
        )
    data["tables"] = list(tables.values())
    if queue:  # else: the plan as one worker's spec (a CronJob's Job copies it all)
        data["full"] = {**data.get("full", {}), "queue": queue, "queue_backend": backend}
    return WorkerSpec.model_validate(data)


def render_batch_copy(
    config: SyncTaskConfig,
    options: WorkloadOptions,
    *,
    run_id: str,
    specs: Sequence[WorkerSpec],
    dsns: Mapping[str, str] | None,
    owners: Sequence[str],
) -> list[Rendered]:
    """``owners[0]``: the unmapped copy task's identity; ``owners[1 + i]``: map index *i*'s."""
    ctx: dict[str, Any] = {
        "namespace": config.namespace,
        "run_id": run_id,
        "dsns": without_queue(dsns),
        "active_deadline_seconds": None,
    }
    if config.schedule_on == "kubernetes":
        assert config.schedule  # the config model requires it with schedule_on kubernetes
        cron = render_cronjob(
            options,
            specs,
            schedule=config.schedule,
            time_zone=config.time_zone,
            starting_deadline_seconds=config.starting_deadline_seconds,
            owner=f"{config.dag_id}.{CRONJOB_TASK}.-1",  # sync_task.owner_key of the cronjob task
            **ctx,
        )
        return [cron]
    if config.fanout == "job-per-worker":
        return [
            render_job(options, spec, retries=JOB_RETRIES, owner=owners[1 + i], **ctx)
            for i, spec in enumerate(specs)
        ]
    queue = queue_name(specs[0].task, run_id)
    ctx["dsns"] = dsns  # with the Redis URL, as QueueFullSyncJobOperator.render_context adds it
    enqueue_spec = queue_spec(specs, queue=queue, backend=config.queue_backend, worker=ENQUEUE_WORKER)
    work_spec = queue_spec(specs, queue=queue, backend=config.queue_backend, worker=QUEUE_WORKER)
    enqueue = render_job(
        options, enqueue_spec, retries=JOB_RETRIES, args=full_args(enqueue=True), owner=owners[0], **ctx
    )
    work = render_queue_job(
        options,
        work_spec,
        queue=queue,
        parallelism=config.workers,
        items=len(specs) if config.fanout == "queue" else None,
        retries=JOB_RETRIES,
        owner=owners[0],
        **ctx,
    )
    return [enqueue, work]


def fanout_summary(config: SyncTaskConfig, workers: int) -> str:
    """One line: what the ``copy`` task of a run with ``workers`` planned workers creates."""
    return {
        "tasks": f"{workers} mapped task(s), one worker Pod each",
        "indexed-job": f"1 Indexed Job, {workers} index(es), ≤{config.workers} pods at once",
        "job-per-worker": f"{workers} Job(s) (mapped task), one worker pod each",
        "queue": "1 enqueue Job (plans and enqueues the chunks), then 1 Job with a pod per chunk "
        f"(completions = chunks, ≤{config.workers} at once); queue on {config.queue_backend}",
        "queue-drain": f"1 enqueue Job, then 1 Job of {config.workers} pods draining the queue "
        f"(on {config.queue_backend})",
    }[config.fanout]


CRON_WORKER = "cron"
CRONJOB_TASK = "cronjob"  # the DAG's task that applies the CronJob (schedule_on kubernetes)


@dataclass(frozen=True)
class RenderedCron(Rendered):
    """A CronJob (a manifest dict: the client's model adds nothing here) and its Secret."""

    @property
    def name(self) -> str:
        return self.workload["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.workload["metadata"]["namespace"]

    def body(self) -> dict:
        return self.workload


def render_cronjob(
    options: WorkloadOptions,
    specs: Sequence[WorkerSpec],
    *,
    schedule: str,
    time_zone: str,
    starting_deadline_seconds: int,
    retries: int = JOB_RETRIES,
    **ctx: Any,
) -> RenderedCron:
    """``schedule_on: kubernetes``: the plan as one worker's Job, wrapped in the task's CronJob."""
    spec = queue_spec(specs, queue=None, backend="postgres", worker=CRON_WORKER)
    job = render_job(options, spec, retries=retries, **ctx)
    body = cron_job(
        job.body(),
        name=cron_job_name(spec.task),
        schedule=schedule,
        time_zone=time_zone,
        starting_deadline_seconds=starting_deadline_seconds,
    )
    return RenderedCron(body, job.companions)
