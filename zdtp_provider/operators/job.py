"""Full-sync workers as Kubernetes Jobs: one Job per worker, Indexed Job, and work queues.

Each operator builds its Job with a pure builder (zdtp_provider.k8s.job), then:

* **never duplicates a Job** (apache/airflow#70585): the Job name is derived from the task
  instance and run, and a retry first looks it up (task state store, then labels). A running or
  succeeded Job is reused; a failed one is deleted and re-created — the worker resumes from the
  checkpoints in the target, so only unfinished chunks run again;
* waits deferrably (ZdtpJobTrigger, whose ``on_kill`` deletes the Job) or in-process;
* reports per-index / per-pod outcomes (exit codes, worker result summaries) as its XCom;
* deletes a succeeded Job (Foreground: pods and Secret too) and keeps a failed one to debug.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from kubernetes.client import V1Job, V1ResourceRequirements

from zdtp_provider.k8s import job as jobs
from zdtp_provider.k8s import manifest
from zdtp_provider.k8s.inputs import WorkloadInputs, workload_inputs
from zdtp_provider.k8s.labels import OWNER, RUN, identity_labels, worker_labels
from zdtp_provider.k8s.names import dns_label, short_hash
from zdtp_provider.k8s.pod import WorkerContainer
from zdtp_provider.k8s.secret import OwnerRef
from zdtp_provider.k8s.status import index_report, job_failure_message, job_phase, pods_report
from zdtp_provider.operators._base import ZdtpBaseOperator
from zdtp_provider.operators._common import (
    SpecInput,
    check,
    placement_kwargs,
    resolve_credentials,
    resolve_spec,
    validate_common,
)
from zdtp_provider.operators._companions import adopt_companions, apply_companions, delete_companions
from zdtp_provider.triggers.job import ZdtpJobTrigger
from zdtp_worker.contract.envelope import INDEX_ENV, full_args
from zdtp_worker.contract.errors import ExitCode
from zdtp_worker.contract.spec import WorkerSpec

JOB_STATE_KEY = "zdtp_job"
FATAL = {int(ExitCode.DATA_ERROR), int(ExitCode.CONFIG_ERROR)}
DELETE_WAIT_SECONDS = 120


class JobKilled(AirflowException):
    """The task was killed and its Job deleted."""


class _FullSyncJobBase(ZdtpBaseOperator):
    """Shared lifecycle of the Job operators; subclasses only say which Job to build."""

    template_fields: Sequence[str] = (
        *ZdtpBaseOperator.template_fields,
        "image",
        "labels",
        "annotations",
        "source_conn_id",
        "target_conn_id",
        "credentials_secret",
    )
    kind_label = "job"

    def __init__(
        self,
        *,
        image: str,
        source_conn_id: str | None = None,
        target_conn_id: str | None = None,
        credentials_secret: str | None = None,
        credentials_keys: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        worker_resources: V1ResourceRequirements | None = None,
        image_pull_policy: str | None = None,
        active_deadline_seconds: int | None = None,
        service_account_name: str | None = None,
        node_selector: Mapping[str, str] | None = None,
        tolerations: Sequence[Any] | None = None,
        host_network: bool = False,
        deferrable: bool = True,
        delete_on_success: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.image = image
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.credentials_secret = credentials_secret
        self.credentials_keys = dict(credentials_keys) if credentials_keys else None
        self.labels = dict(labels or {})
        self.annotations = dict(annotations or {})
        self.worker_resources = worker_resources
        self.image_pull_policy = image_pull_policy
        self.active_deadline_seconds = active_deadline_seconds
        self.service_account_name = service_account_name
        self.node_selector = dict(node_selector) if node_selector else None
        self.tolerations = list(tolerations) if tolerations else None
        self.host_network = host_network
        self.deferrable = deferrable
        self.delete_on_success = delete_on_success
        self._job_ref: tuple[str, str] | None = None

    # ---------------------------------------------------------------- subclass API

    def worker_specs(self, context: Context) -> list[WorkerSpec]:
        raise NotImplementedError

    def build_job(
        self, cfg: WorkerContainer, *, name: str, namespace: str, labels: dict, count: int
    ) -> V1Job:
        raise NotImplementedError

    def container_args(self) -> list[str]:
        return full_args()

    # ---------------------------------------------------------------- execute

    def execute(self, context: Context) -> Any:
        job_body, inputs = self._render_job(context)  # all validation happens here: no object yet
        name, namespace = job_body["metadata"]["name"], job_body["metadata"]["namespace"]
        self._job_ref = (name, namespace)
        self._find_or_create(job_body, inputs, context)
        if self.deferrable:
            self.defer(
                trigger=ZdtpJobTrigger(**self.trigger_kwargs(name=name, namespace=namespace)),
                method_name="execute_complete",
            )
        self._wait(name, namespace)
        return self._conclude(name, namespace, context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        name, namespace = event["name"], event.get("namespace") or self.resolved_namespace()
        self._job_ref = (name, namespace)
        if event["status"] == "error":
            raise AirflowException(f"waiting for Job {namespace}/{name} failed: {event.get('message')}")
        return self._conclude(name, namespace, context)

    def on_kill(self) -> None:
        """Sync mode kill (SIGTERM, timeout): delete the Job with Foreground propagation."""
        self._killed = True
        if self._job_ref:
            name, namespace = self._job_ref
            self.log.info("Task killed: deleting Job %s/%s (Foreground)", namespace, name)
            try:
                self.hook.delete(kind="Job", name=name, namespace=namespace)
            except Exception:
                self.log.exception("could not delete Job %s/%s", namespace, name)

    # ---------------------------------------------------------------- steps

    def _render_job(self, context: Context) -> tuple[dict, WorkloadInputs]:
        specs = self.worker_specs(context)
        validate_common(
            namespace=self.namespace, image=self.image, labels=self.labels, annotations=self.annotations
        )
        if len({s.task for s in specs}) != 1:
            raise AirflowException("spec.task: every worker of one Job must belong to the same sync task")
        creds = resolve_credentials(
            source_conn_id=self.source_conn_id,
            target_conn_id=self.target_conn_id,
            credentials_secret=self.credentials_secret,
            credentials_keys=self.credentials_keys,
        )
        namespace = self.resolved_namespace()
        first = specs[0]
        worker = first.worker if len(specs) == 1 else self.kind_label
        owner = self.owner_key(context)
        name = check(
            dns_label,
            dns_label("zdtp", first.task, worker, max_length=54),
            short_hash(owner, context["run_id"]),
        )
        labels = worker_labels(
            task=first.task,
            worker=worker,
            component="full-sync",
            run_id=context["run_id"],
            owner=owner,
            extra=self.labels,
        )
        indexed = len(specs) > 1 or self.kind_label == "indexed"
        spec_files = (
            {f"spec-{i}.json": s.to_json() for i, s in enumerate(specs)}
            if indexed
            else {"spec.json": first.to_json()}
        )
        inputs = workload_inputs(
            name=name,
            namespace=namespace,
            labels=labels,
            spec_files=spec_files,
            dsns=creds.dsns,
            user_secret=creds.user_secret,
            index_template=f"spec-$({INDEX_ENV}).json" if indexed else None,
        )
        cfg = WorkerContainer(
            image=self.image,
            args=self.container_args(),
            spec=inputs.spec,
            credentials=inputs.credentials,
            resources=self.worker_resources,
            image_pull_policy=self.image_pull_policy,
        )
        job = check(self.build_job, cfg, name=name, namespace=namespace, labels=labels, count=len(specs))
        return manifest(job), inputs

    def _lookup_labels(self, body: dict) -> dict[str, str]:
        labels = body["metadata"]["labels"]
        keys = [*identity_labels(task="x", worker="x", component="full-sync"), RUN, OWNER]
        return {k: labels[k] for k in keys if k in labels}

    def _find_or_create(self, body: dict, inputs: WorkloadInputs, context: Context) -> V1Job:
        name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
        store = context.get("task_state_store")
        existing = self.hook.read_job(name, namespace)
        if existing is None:
            found = self.hook.find_jobs(namespace, self._lookup_labels(body))
            existing = found[0] if found else None
        if existing is not None:
            phase = job_phase(existing)
            if phase in ("running", "succeeded"):
                self.log.info(
                    "Reusing Job %s (%s) created by an earlier try instead of creating a second one",
                    existing.metadata.name,
                    phase,
                )
                self._job_ref = (existing.metadata.name, namespace)
                return existing
            self.log.info("Job %s from an earlier try failed: replacing it", existing.metadata.name)
            self.hook.delete(kind="Job", name=existing.metadata.name, namespace=namespace)
            self._await_gone(existing.metadata.name, namespace)
        applied = apply_companions(self.hook, inputs.companions)
        try:
            job = self.hook.create(body)
        except Exception as exc:
            if getattr(exc, "reason", None) == "AlreadyExists":
                # A concurrent try won the race: its Job adopts the same-named companions.
                return self.hook.read_job(name, namespace)
            delete_companions(self.hook, applied)
            raise
        if applied:
            adopt_companions(
                self.hook,
                applied,
                OwnerRef(api_version="batch/v1", kind="Job", name=name, uid=job.metadata.uid),
            )
        if store is not None:
            store.set(JOB_STATE_KEY, {"name": name, "namespace": namespace})
        self.log.info("Created Job %s/%s", namespace, name)
        return job

    def _await_gone(self, name: str, namespace: str) -> None:
        deadline = time.monotonic() + DELETE_WAIT_SECONDS
        while self.hook.read_job(name, namespace) is not None:
            if time.monotonic() > deadline:
                raise AirflowException(
                    f"Job {namespace}/{name} was not deleted within {DELETE_WAIT_SECONDS}s"
                )
            time.sleep(1)

    def _wait(self, name: str, namespace: str) -> None:
        while not self._killed:
            job = self.hook.read_job(name, namespace)
            if job is None and not self._killed:
                raise AirflowException(f"Job {namespace}/{name} was deleted while the task waited for it")
            if job is not None and job_phase(job) != "running":
                return
            time.sleep(self.poll_interval)
        raise JobKilled(f"task was killed; Job {namespace}/{name} was deleted")

    def _report(self, job: V1Job) -> dict[str, Any]:
        pods = self.hook.job_pods(job)
        if job.spec.completion_mode == "Indexed":
            return index_report(job, pods)
        return pods_report(job, pods)

    def _conclude(self, name: str, namespace: str, context: Context) -> dict[str, Any]:
        job = self.hook.read_job(name, namespace)
        if job is None:
            raise AirflowException(f"Job {namespace}/{name} disappeared before its outcome was read")
        report = self._report(job)
        if report["phase"] == "succeeded":
            if self.delete_on_success:
                self.hook.delete(kind="Job", name=name, namespace=namespace)
            return report
        codes = _exit_codes(report)
        summary = _failure_summary(report)
        text = f"Job {namespace}/{name} failed: {job_failure_message(job)}; {summary}"
        # The report is the most useful thing to debug with: keep it even on failure.
        context["ti"].xcom_push(key="report", value=report)
        if codes and codes <= FATAL:
            raise AirflowFailException(f"{text} (exit codes {sorted(codes)} are not retryable)")
        raise AirflowException(text)


def _exit_codes(report: dict[str, Any]) -> set[int]:
    """Non-zero exit codes of the attempts that finally failed."""
    if "indexes" in report:
        return {
            entry["exit_codes"][-1]
            for entry in report["indexes"].values()
            if entry["status"] == "failed" and entry["exit_codes"]
        }
    return {p["exit_code"] for p in report.get("pods", []) if p["exit_code"]}


def _failure_summary(report: dict[str, Any]) -> str:
    if "indexes" in report:
        failed = {i: e for i, e in report["indexes"].items() if e["status"] == "failed"}
        parts = [
            f"index {i}: exit {e['exit_codes'][-1:]} {e.get('message', '')}".strip()
            for i, e in failed.items()
        ]
        return f"{len(report['succeeded'])} indexes succeeded, {len(failed)} failed ({'; '.join(parts[:5])})"
    fails = [p for p in report.get("pods", []) if p["exit_code"]]
    parts = [f"{p['pod']}: exit {p['exit_code']} {p.get('message', '')}".strip() for p in fails[:5]]
    return f"{report['succeeded']} pods succeeded, {report['failed']} failed ({'; '.join(parts)})"


class FullSyncJobOperator(_FullSyncJobBase):
    """Pattern (a), template expansion: one Job per worker. Fan out with ``.expand(spec=[...])``.

    :param spec: one WorkerSpec (templated); ``run_id`` defaults to the Airflow run id.
    :param job_retries: pod retries inside the Job (``backoffLimit``) for exit 75 / crashes.
    """

    template_fields: Sequence[str] = (*_FullSyncJobBase.template_fields, "spec")
    kind_label = "job"

    def __init__(self, *, spec: SpecInput, job_retries: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.job_retries = job_retries

    def worker_specs(self, context: Context) -> list[WorkerSpec]:
        return [resolve_spec(self.spec, mode="full", run_id=context["run_id"])]

    def build_job(
        self, cfg: WorkerContainer, *, name: str, namespace: str, labels: dict, count: int
    ) -> V1Job:
        return jobs.worker_job(
            cfg,
            name=name,
            namespace=namespace,
            labels=labels,
            retries=self.job_retries,
            pod_annotations=self.annotations,
            active_deadline_seconds=self.active_deadline_seconds,
            pod_kwargs=self._pod_kwargs(),
        )

    def _pod_kwargs(self) -> dict[str, Any]:
        return placement_kwargs(
            service_account_name=self.service_account_name,
            node_selector=self.node_selector,
            tolerations=self.tolerations,
            host_network=self.host_network,
        )


class IndexedFullSyncJobOperator(FullSyncJobOperator):
    """Pattern (b): one Indexed Job; index *i* runs ``specs[i]``.

    ``backoffLimitPerIndex`` gives each index its own retry budget; the pod failure policy fails
    an index at once on exit 65/78, counts 75 toward its retries, ignores disruptions.

    :param specs: the workers' WorkerSpecs (templated), one per index.
    :param parallelism: how many indexes run at once.
    :param retries_per_index: retries of one index (``backoffLimitPerIndex``).
    :param max_failed_indexes: stop the whole Job early after this many failed indexes.
    """

    template_fields: Sequence[str] = (*_FullSyncJobBase.template_fields, "specs")
    kind_label = "indexed"

    def __init__(
        self,
        *,
        specs: Sequence[SpecInput] | str,
        parallelism: int = 4,
        retries_per_index: int = 1,
        max_failed_indexes: int | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("spec", {})
        super().__init__(**kwargs)
        self.specs = specs
        self.parallelism = parallelism
        self.retries_per_index = retries_per_index
        self.max_failed_indexes = max_failed_indexes

    def worker_specs(self, context: Context) -> list[WorkerSpec]:
        specs = self.specs
        if isinstance(specs, str):
            import json

            try:
                specs = json.loads(specs)
            except ValueError as exc:
                raise AirflowException(f"specs: not valid JSON: {exc}") from None
        if not isinstance(specs, (list, tuple)):
            raise AirflowException(f"specs: expected a list of worker specs, got {type(specs).__name__}")
        if not specs:
            # Like a mapped task expanded over nothing (a dry run's empty plan): nothing to run.
            raise AirflowSkipException("specs is empty: no worker to start")
        return [
            resolve_spec(s, mode="full", run_id=context["run_id"], field=f"specs[{i}]")
            for i, s in enumerate(specs)
        ]

    def build_job(
        self, cfg: WorkerContainer, *, name: str, namespace: str, labels: dict, count: int
    ) -> V1Job:
        return jobs.indexed_job(
            cfg,
            name=name,
            namespace=namespace,
            labels=labels,
            completions=count,
            parallelism=self.parallelism,
            retries_per_index=self.retries_per_index,
            max_failed_indexes=self.max_failed_indexes,
            pod_annotations=self.annotations,
            active_deadline_seconds=self.active_deadline_seconds,
            pod_kwargs=self._pod_kwargs(),
        )


class QueueFullSyncJobOperator(FullSyncJobOperator):
    """Patterns (c) and (d): workers pull chunks from work queue ``work_queue``.

    With ``items`` (c) each pod runs ``--queue-mode one`` and the Job needs ``items`` successes.
    Without (d) ``parallelism`` pods run ``--queue-mode drain``; the Job completes once one pod
    has succeeded (found the queue empty) and all have stopped.
    """

    template_fields: Sequence[str] = (*FullSyncJobOperator.template_fields, "work_queue")
    kind_label = "queue"

    def __init__(
        self, *, work_queue: str, parallelism: int = 4, items: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.work_queue = work_queue
        self.parallelism = parallelism
        self.items = items

    def container_args(self) -> list[str]:
        return full_args(queue=self.work_queue, queue_mode="one" if self.items is not None else "drain")

    def build_job(
        self, cfg: WorkerContainer, *, name: str, namespace: str, labels: dict, count: int
    ) -> V1Job:
        return jobs.queue_job(
            cfg,
            name=name,
            namespace=namespace,
            labels=labels,
            parallelism=self.parallelism,
            items=self.items,
            retries=self.job_retries,
            pod_annotations=self.annotations,
            active_deadline_seconds=self.active_deadline_seconds,
            pod_kwargs=self._pod_kwargs(),
        )


__all__ = [
    "FullSyncJobOperator",
    "IndexedFullSyncJobOperator",
    "JobKilled",
    "QueueFullSyncJobOperator",
]
