"""What a queue fan-out's copy task does around its Job: enqueue first, check the queue after.

1. **enqueue** — a one-pod Job of the worker image runs ``zdtp-worker full --enqueue`` (chunk
   planning needs the copy engine's driver, which the Airflow side does not install). Items are
   keyed by run, table, key range and chunk, so a retry adds nothing; the pod's result says how
   many items are not done yet — a ``queue`` Job's completions.
2. the operator creates and waits for the work Job (:class:`~.job.QueueFullSyncJobOperator`);
3. **check** — a Job can complete with work undone (a pod that gave up, an item whose pod
   vanished), so the task trusts the queue, not the Job: every item done, none ready, leased or
   abandoned, else it fails naming them (:mod:`zdtp_worker.control.queue`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from zdtp_provider.k8s.secret import QUEUE_KEY, TARGET_KEY
from zdtp_provider.k8s.status import job_failure_message, job_phase, pods_report
from zdtp_provider.workload import WorkloadOptions, render_job
from zdtp_provider.workload.batch import ENQUEUE_WORKER, QUEUE_WORKER, queue_spec
from zdtp_worker.contract.envelope import full_args
from zdtp_worker.contract.spec import WorkerSpec
from zdtp_worker.control.queue import QueueIncomplete, check_queue, queue_name

if TYPE_CHECKING:
    from zdtp_provider.operators.job import QueueFullSyncJobOperator


def enqueue(op: QueueFullSyncJobOperator, context: Context, spec: WorkerSpec, ctx: dict[str, Any]) -> int:
    """Run the enqueue pod and return the number of items not done yet."""
    rendered = render_job(
        WorkloadOptions.from_operator(op), spec, retries=op.job_retries, args=full_args(enqueue=True), **ctx
    )
    name, namespace = rendered.name, rendered.namespace
    op._find_or_create(rendered, context)
    op._wait(name, namespace)
    job = op.hook.read_job(name, namespace)
    if job is None:
        raise AirflowException(f"enqueue Job {namespace}/{name} disappeared before its outcome was read")
    report = pods_report(job, op.hook.job_pods(job))
    if job_phase(job) != "succeeded":
        codes = {p["exit_code"] for p in report["pods"]}
        text = f"enqueue Job {namespace}/{name} failed: {job_failure_message(job)}; pods: {report['pods']}"
        if codes & {65, 78}:
            raise AirflowFailException(text)
        raise AirflowException(text)
    results = [p["result"] for p in report["pods"] if p.get("exit_code") == 0 and p.get("result")]
    if not results:
        raise AirflowException(f"enqueue Job {namespace}/{name} succeeded without a result")
    op.log.info("enqueue: %s", results[-1].get("message"))
    op.hook.delete(kind="Job", name=name, namespace=namespace)
    return int(results[-1]["chunks"])


def check(op: QueueFullSyncJobOperator, context: Context, spec: WorkerSpec, dsns: dict[str, str]) -> str:
    """Fail the task naming every item the Job left undone; the status line otherwise. A Redis
    queue is read at the URL the pods got (``dsns``' queue key), else at ``op.queue_url``."""
    queue = spec.full.queue or ""
    target = dsns.get(TARGET_KEY)
    if spec.full.queue_backend == "postgres" and not target:
        raise AirflowFailException(
            "a queue fan-out checks its queue in the target after the Job: set target_conn_id"
        )
    try:
        status = check_queue(
            backend=spec.full.queue_backend,
            queue=queue,
            target_dsn=target,
            url=dsns.get(QUEUE_KEY) or op.queue_url,
        )
    except QueueIncomplete as exc:
        raise AirflowException(f"the Job ended but work is left: {exc}") from None
    line = f"queue {queue}: all {status.total} items done"
    op.log.info(line)
    return line


__all__ = ["ENQUEUE_WORKER", "QUEUE_WORKER", "check", "enqueue", "queue_name", "queue_spec"]
