"""The lifecycle every Job operator shares: find-or-create, wait (deferred or not), conclude.

* **never duplicates a Job** (apache/airflow#70585): the Job name is derived from the task
  instance and run, and a retry first looks it up (by name, then labels). A running or
  succeeded Job is reused; a failed one is deleted and re-created — the worker resumes from the
  checkpoints in the target, so only unfinished chunks run again;
* waits deferrably (ZdtpJobTrigger, whose ``on_kill`` deletes the Job) or in-process; a Job
  already finished when the task would defer is concluded in-process (``_defer``);
* logs the workers' progress lines while it waits (polled, ``_progress``) or, deferred, the last
  ones when it resumes;
* reports per-index / per-pod outcomes (exit codes, worker result summaries) as its XCom;
* deletes a succeeded Job (Foreground: pods and Secret too) and keeps a failed one to debug.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from kubernetes.client import V1Job

from zdtp_provider.hooks.kubernetes import WritesRefused
from zdtp_provider.k8s.labels import OWNER, RUN, identity_labels
from zdtp_provider.k8s.secret import OwnerRef
from zdtp_provider.k8s.status import (
    failure_summary,
    index_report,
    is_fatal,
    job_failure_message,
    job_phase,
    pods_report,
    report_exit_codes,
)
from zdtp_provider.links import WorkerObjectLink
from zdtp_provider.operators._companions import adopt_companions, apply_companions, delete_companions
from zdtp_provider.operators._defer import defer_unless_done
from zdtp_provider.operators._inputs import default_deferrable
from zdtp_provider.operators._kube_operator import ZdtpKubeOperator
from zdtp_provider.operators._progress import ProgressTail
from zdtp_provider.triggers.job import ZdtpJobTrigger, job_event
from zdtp_provider.workload import Rendered

JOB_STATE_KEY = "zdtp_job"
DELETE_WAIT_SECONDS = 120
# Progress lines while waiting: pod logs are read at most this often, not every status poll.
PROGRESS_EVERY_SECONDS = 10.0
# On resume after deferral: the last lines per pod (the trigger itself logs nothing).
RESUME_TAIL_LINES = 10


class JobKilled(AirflowException):
    """The task was killed and its Job deleted."""


class JobLifecycleOperator(ZdtpKubeOperator):
    """Runs the Job that :meth:`render` returns; subclasses only render."""

    operator_extra_links = (WorkerObjectLink(),)

    def __init__(
        self, *, deferrable: bool | None = None, delete_on_success: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.delete_on_success = delete_on_success
        self._job_ref: tuple[str, str] | None = None

    def render(self, context: Context) -> Rendered:
        raise NotImplementedError

    def worker_object(self) -> tuple[str, str, str] | None:
        """(kind, namespace, name) of the worker Job, for :class:`WorkerObjectLink`."""
        return ("Job", self._job_ref[1], self._job_ref[0]) if self._job_ref else None

    # ---------------------------------------------------------------- execute

    def execute(self, context: Context) -> Any:
        rendered = self.render(context)  # all validation happens here: no object yet
        name, namespace = rendered.name, rendered.namespace
        self._job_ref = (name, namespace)
        self._find_or_create(rendered, context)
        if self.deferrable:
            # A Job already complete (a reused one, or a very short one) is concluded here.
            return defer_unless_done(
                self,
                context,
                check=lambda: job_event(self.hook, name, namespace),
                trigger=ZdtpJobTrigger(**self.trigger_kwargs(name=name, namespace=namespace)),
                method_name="execute_complete",
                where=(name, namespace),
            )
        self._wait(name, namespace)
        return self._conclude(name, namespace, context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        name, namespace = event["name"], event.get("namespace") or self.resolved_namespace()
        self._job_ref = (name, namespace)
        if event["status"] == "error":
            raise AirflowException(f"waiting for Job {namespace}/{name} failed: {event.get('message')}")
        self._log_progress(name, namespace, tail_lines=RESUME_TAIL_LINES)
        return self._conclude(name, namespace, context)

    def on_kill(self) -> None:
        """Sync mode kill (SIGTERM, timeout): delete the Job with Foreground propagation."""
        self._killed = True
        self.hook.refuse_writes("the task was killed")
        if self._job_ref:
            name, namespace = self._job_ref
            self.log.info("Task killed: deleting Job %s/%s (Foreground)", namespace, name)
            try:
                self.hook.delete(kind="Job", name=name, namespace=namespace)
            except Exception:
                self.log.exception("could not delete Job %s/%s", namespace, name)

    # ---------------------------------------------------------------- steps

    def _find_or_create(self, rendered: Rendered, context: Context) -> V1Job:
        body, name, namespace = rendered.body(), rendered.name, rendered.namespace
        existing = self.hook.read_job(name, namespace)
        if existing is None:
            found = self.hook.find_jobs(namespace, _lookup_labels(body))
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
        applied: list[dict] = []
        try:
            applied = apply_companions(self.hook, rendered.companions)
            job = self.hook.create(body)
        except WritesRefused:
            delete_companions(self.hook, applied)
            raise JobKilled(f"task was killed before Job {namespace}/{name} was created") from None
        except Exception as exc:
            if getattr(exc, "reason", None) == "AlreadyExists":
                # A concurrent try won the race: its Job adopts the same-named companions.
                return self.hook.read_job(name, namespace)
            delete_companions(self.hook, applied)
            raise
        if applied:
            owner = OwnerRef(api_version="batch/v1", kind="Job", name=name, uid=job.metadata.uid)
            adopt_companions(self.hook, applied, owner)
        if (store := context.get("task_state_store")) is not None:
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
        next_progress = time.monotonic()
        while not self._killed:
            job = self.hook.read_job(name, namespace)
            if job is None and not self._killed:
                raise AirflowException(f"Job {namespace}/{name} was deleted while the task waited for it")
            done = job is not None and job_phase(job) != "running"
            if done or time.monotonic() >= next_progress:
                self._log_progress(name, namespace, job=job)
                next_progress = time.monotonic() + PROGRESS_EVERY_SECONDS
            if done:
                return
            time.sleep(self.poll_interval)
        raise JobKilled(f"task was killed; Job {namespace}/{name} was deleted")

    @cached_property
    def _progress(self) -> ProgressTail:
        return ProgressTail(self.hook.core_v1_client.read_namespaced_pod_log)

    def _log_progress(self, name: str, namespace: str, *, job: V1Job | None = None, **tail: int) -> None:
        """Log the workers' new progress lines; never fails the task (logs are best effort)."""
        try:
            job = job or self.hook.read_job(name, namespace)
            lines = self._progress.read(self.hook.job_pods(job), **tail) if job else []
        except Exception as exc:
            self.log.debug("no worker log lines for Job %s/%s: %s", namespace, name, exc)
            return
        for line in lines:
            self.log.info("%s", line)

    def _conclude(self, name: str, namespace: str, context: Context) -> dict[str, Any]:
        job = self.hook.read_job(name, namespace)
        if job is None:
            raise AirflowException(f"Job {namespace}/{name} disappeared before its outcome was read")
        pods = self.hook.job_pods(job)
        report = index_report(job, pods) if job.spec.completion_mode == "Indexed" else pods_report(job, pods)
        if report["phase"] == "succeeded":
            if self.delete_on_success:
                self.hook.delete(kind="Job", name=name, namespace=namespace)
            return report
        codes = report_exit_codes(report)
        text = f"Job {namespace}/{name} failed: {job_failure_message(job)}; {failure_summary(report)}"
        # The report is the most useful thing to debug with: keep it even on failure.
        context["ti"].xcom_push(key="report", value=report)
        if is_fatal(codes):
            raise AirflowFailException(f"{text} (exit codes {sorted(codes)} are not retryable)")
        raise AirflowException(text)


def _lookup_labels(body: dict) -> dict[str, str]:
    labels = body["metadata"]["labels"]
    keys: Sequence[str] = [*identity_labels(task="x", worker="x", component="full-sync"), RUN, OWNER]
    return {k: labels[k] for k in keys if k in labels}
