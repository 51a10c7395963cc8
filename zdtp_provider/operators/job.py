"""Full-sync workers as Kubernetes Jobs: one Job per worker, Indexed Job, and work queues.

Each operator only resolves its Airflow inputs (templated arguments, connections, the task
instance's identity) and renders its Job with :mod:`zdtp_provider.workload`; the shared
lifecycle (no duplicate Job on retry, deferred or in-process wait, per-index report, clean-up) is
:class:`~zdtp_provider.operators._job_lifecycle.JobLifecycleOperator`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from zdtp_provider.k8s.secret import QUEUE_KEY
from zdtp_provider.operators import job_queue
from zdtp_provider.operators._inputs import as_airflow_error, lookup_dsns
from zdtp_provider.operators._job_lifecycle import JobKilled, JobLifecycleOperator
from zdtp_provider.operators._kube_operator import (
    POD_TEMPLATE_FIELDS,
    PodArgumentsMixin,
    ZdtpKubeOperator,
)
from zdtp_provider.queue_connection import resolve_queue_url
from zdtp_provider.workload import (
    Rendered,
    WorkloadOptions,
    render_indexed_job,
    render_job,
    render_queue_job,
    resolve_spec,
    resolve_specs,
)
from zdtp_provider.workload.specs import SpecInput
from zdtp_worker.contract.spec import WorkerSpec


class _FullSyncJobBase(PodArgumentsMixin, JobLifecycleOperator):
    """Arguments every Job operator takes: image, credentials, KPO pod arguments, deadline."""

    template_fields: Sequence[str] = (*ZdtpKubeOperator.template_fields, *POD_TEMPLATE_FIELDS)

    def __init__(
        self,
        *,
        image: str,
        source_conn_id: str | None = None,
        target_conn_id: str | None = None,
        credentials_secret: str | None = None,
        credentials_keys: Mapping[str, str] | None = None,
        sslmode: str | None = None,
        tls_secret: str | None = None,
        active_deadline_seconds: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.image = image
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.credentials_secret = credentials_secret
        self.credentials_keys = dict(credentials_keys) if credentials_keys else None
        self.sslmode = sslmode
        self.tls_secret = tls_secret
        self.active_deadline_seconds = active_deadline_seconds

    def render_context(self, context: Context) -> dict[str, Any]:
        """What every Job render needs from Airflow: namespace, identity, looked-up DSNs."""
        options = WorkloadOptions.from_operator(self)
        with as_airflow_error():
            options.validate()
        return {
            "namespace": self.resolved_namespace(),
            "owner": self.owner_key(context),
            "run_id": context["run_id"],
            "dsns": lookup_dsns(options),
            "active_deadline_seconds": self.active_deadline_seconds,
        }


class FullSyncJobOperator(_FullSyncJobBase):
    """Pattern (a), template expansion: one Job per worker. Fan out with ``.expand(spec=[...])``.

    :param spec: one WorkerSpec (templated); ``run_id`` defaults to the Airflow run id.
    :param job_retries: pod retries inside the Job (``backoffLimit``) for exit 75 / crashes.
    """

    template_fields: Sequence[str] = (*_FullSyncJobBase.template_fields, "spec")

    def __init__(self, *, spec: SpecInput, job_retries: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.job_retries = job_retries

    def render(self, context: Context) -> Rendered:
        with as_airflow_error():
            spec = resolve_spec(self.spec, mode="full", run_id=context["run_id"])
            ctx = self.render_context(context)
            return render_job(WorkloadOptions.from_operator(self), spec, retries=self.job_retries, **ctx)


class IndexedFullSyncJobOperator(_FullSyncJobBase):
    """Pattern (b): one Indexed Job; index *i* runs ``specs[i]``.

    ``backoffLimitPerIndex`` gives each index its own retry budget; the pod failure policy fails
    an index at once on exit 65/78, counts 75 toward its retries, ignores disruptions.

    :param specs: the workers' WorkerSpecs (templated), one per index.
    :param parallelism: how many indexes run at once.
    :param retries_per_index: retries of one index (``backoffLimitPerIndex``).
    :param max_failed_indexes: stop the whole Job early after this many failed indexes.
    """

    template_fields: Sequence[str] = (*_FullSyncJobBase.template_fields, "specs")

    def __init__(
        self,
        *,
        specs: Sequence[SpecInput] | str,
        parallelism: int = 4,
        retries_per_index: int = 1,
        max_failed_indexes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.specs = specs
        self.parallelism = parallelism
        self.retries_per_index = retries_per_index
        self.max_failed_indexes = max_failed_indexes

    def render(self, context: Context) -> Rendered:
        with as_airflow_error():
            specs = resolve_specs(self.specs, mode="full", run_id=context["run_id"])
        if not specs:
            # Like a mapped task expanded over nothing (a dry run's empty plan): nothing to run.
            raise AirflowSkipException("specs is empty: no worker to start")
        with as_airflow_error():
            return render_indexed_job(
                WorkloadOptions.from_operator(self),
                specs,
                parallelism=self.parallelism,
                retries_per_index=self.retries_per_index,
                max_failed_indexes=self.max_failed_indexes,
                **self.render_context(context),
            )


class QueueFullSyncJobOperator(FullSyncJobOperator):
    """Patterns (c) and (d): workers pull chunks from a work queue.

    With ``items`` or ``pod_per_item`` (c) each pod runs ``--queue-mode one`` and the Job needs
    that many successes. Otherwise (d) ``parallelism`` pods run ``--queue-mode drain``; the Job
    completes once one pod has succeeded (found the queue empty) and all have stopped.

    With ``enqueue`` the task fills the queue itself first (an enqueue pod; ``pod_per_item`` then
    takes its item count as completions) and checks it after the Job: every item done, else it
    fails naming them (:mod:`zdtp_provider.operators.job_queue`). ``spec`` may then be the whole
    plan (a list of specs); the queue defaults to one per run of the task.

    :param queue_backend: ``postgres`` (``zdtp.work_queue`` in the target) or ``redis``.
    :param queue_conn_id: ``redis``: the Airflow ``redis`` connection of the queue. Its URL joins
        the DSNs in the credentials Secret (pods read ``ZDTP_QUEUE_DSN_FILE``) and this task checks
        the queue at the same URL. With ``credentials_secret`` instead, put the URL in that Secret
        (``credentials_keys={"queue": ...}``) and give this task ``queue_url``.
    """

    template_fields: Sequence[str] = (*FullSyncJobOperator.template_fields, "work_queue")

    def __init__(
        self,
        *,
        work_queue: str | None = None,
        parallelism: int = 4,
        items: int | None = None,
        pod_per_item: bool = False,
        enqueue: bool = False,
        queue_backend: str = "postgres",
        queue_conn_id: str | None = None,
        queue_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not work_queue and not enqueue:
            raise AirflowException("work_queue: name the queue, or let the task fill one (enqueue=True)")
        self.work_queue = work_queue
        self.parallelism = parallelism
        self.items = items
        self.pod_per_item = pod_per_item
        self.enqueue = enqueue
        self.queue_backend = queue_backend
        self.queue_conn_id = queue_conn_id
        self.queue_url = queue_url
        if queue_backend not in ("postgres", "redis"):
            raise AirflowException(f"queue_backend: 'postgres' or 'redis', got {queue_backend!r}")
        if queue_backend == "redis" and not (queue_conn_id or queue_url):
            raise AirflowException("queue_backend redis: give queue_conn_id (an Airflow redis connection)")
        if queue_conn_id and self.credentials_secret:
            raise AirflowException(
                "queue_conn_id: the URL joins the Secret zdtp makes from source/target connections; with"
                " credentials_secret put it in that Secret (credentials_keys 'queue') and pass queue_url"
            )

    def render_context(self, context: Context) -> dict[str, Any]:
        """Adds the queue's Redis URL to the credentials Secret's data (looked up before any write)."""
        ctx = super().render_context(context)
        if self.queue_conn_id:
            ctx["dsns"] = {**ctx["dsns"], QUEUE_KEY: resolve_queue_url(self.queue_conn_id)}
        return ctx

    def _queue_spec(self, context: Context, worker: str) -> WorkerSpec:
        with as_airflow_error():
            raw = self.spec if isinstance(self.spec, (list, tuple)) else [self.spec]
            specs = resolve_specs(list(raw), mode="full", run_id=context["run_id"])
            if not specs:
                raise AirflowSkipException("the plan is empty: nothing to enqueue")
            queue = self.work_queue or job_queue.queue_name(specs[0].task, context["run_id"])
            return job_queue.queue_spec(specs, queue=queue, backend=self.queue_backend, worker=worker)

    def execute(self, context: Context) -> Any:
        if self.enqueue:
            spec = self._queue_spec(context, job_queue.ENQUEUE_WORKER)
            left = job_queue.enqueue(self, context, spec, self.render_context(context))
            if self.pod_per_item:
                self.items = left
            if left == 0:
                return {"queue": job_queue.check(self, context, spec, self.render_context(context)["dsns"])}
        return super().execute(context)

    def render(self, context: Context) -> Rendered:
        spec = self._queue_spec(context, job_queue.QUEUE_WORKER)
        with as_airflow_error():
            return render_queue_job(
                WorkloadOptions.from_operator(self),
                spec,
                queue=spec.full.queue or "",
                parallelism=self.parallelism,
                items=self.items,
                retries=self.job_retries,
                **self.render_context(context),
            )

    def _conclude(self, name: str, namespace: str, context: Context) -> dict[str, Any]:
        report = super()._conclude(name, namespace, context)
        if self.enqueue:
            spec = self._queue_spec(context, job_queue.QUEUE_WORKER)
            report["queue"] = job_queue.check(self, context, spec, self.render_context(context)["dsns"])
        return report


__all__ = [
    "FullSyncJobOperator",
    "IndexedFullSyncJobOperator",
    "JobKilled",
    "QueueFullSyncJobOperator",
]
