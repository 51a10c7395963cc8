"""FullSyncOperator: one full-sync worker as one Pod, via the provider's KubernetesPodOperator.

KPO already does pod lifecycle, deferral, durable re-attachment and log streaming well; this
subclass only replaces the manifest (zdtp_provider.k8s.pod: restricted security, labels, spec and
credential wiring), adds the credentials Secret owned by the pod, reads the worker's JSON result
from the termination message into XCom, and closes KPO's known gaps:

* #73006 — a SIGTERMed KPO deletes its pod in ``on_kill`` and then ends SUCCESS. Here a killed
  task always raises.
* Failed pods are kept for debugging, succeeded and still-active ones (schedule timeout) are
  deleted: neither of KPO's ``on_finish_action`` values does exactly that.
* Exit codes 65/78 (data/config error) raise AirflowFailException: retrying cannot help.
* A pod that finished before its task deferred is concluded in-process instead of deferring
  (apache/airflow#66374: the trigger would fire at once and the scheduler can fail the task on
  the deferring process's stale executor event); see ``invoke_defer_method``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.triggers.pod import ContainerState, KubernetesPodTrigger
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred
from kubernetes.client import V1Pod

from zdtp_provider.hooks.connection import KubeConnection
from zdtp_provider.hooks.kubernetes import ZdtpKubernetesHook
from zdtp_provider.k8s.pod import CONTAINER_NAME
from zdtp_provider.k8s.secret import OwnerRef
from zdtp_provider.k8s.status import is_fatal, pod_exit, pod_result, pod_waiting_reasons
from zdtp_provider.links import WorkerObjectLink
from zdtp_provider.operators._companions import adopt_companions, apply_companions, delete_companions
from zdtp_provider.operators._inputs import as_airflow_error, lookup_dsns
from zdtp_provider.triggers.settle import SettledPodTrigger, settle_deadline
from zdtp_provider.workload import WorkloadOptions, render_pod, resolve_spec
from zdtp_provider.workload.pod_args import check_unsupported, translate_aliases
from zdtp_provider.workload.specs import SpecInput

XCOM_RETURN_KEY = "return_value"


def _settled(deferral: TaskDeferred) -> TaskDeferred:
    """KPO's deferral with its pod trigger holding the event until the deferral has settled."""
    trigger = deferral.trigger
    if not isinstance(trigger, KubernetesPodTrigger) or isinstance(trigger, SettledPodTrigger):
        return deferral
    return TaskDeferred(
        trigger=SettledPodTrigger.wrapping(trigger, settle_deadline()),
        method_name=deferral.method_name,
        kwargs=deferral.kwargs,
        timeout=deferral.timeout,
    )


class WorkerKilled(AirflowException):
    """The task was killed (SIGTERM, mark-failed, timeout) and its worker pod deleted."""


class FullSyncOperator(KubernetesPodOperator):
    """Run one full-sync worker (``zdtp-worker full``) as a Pod and push its result summary.

    Every KubernetesPodOperator pod argument zdtp can honour is applied under the restricted
    security context (``container_resources``, ``affinity``, ``tolerations``, ``env_vars``,
    ``volumes``, ``pod_template_file``...); one it cannot (``cmds``, ``security_context``...) raises
    at construction.

    :param spec: the WorkerSpec (model, dict or JSON; templated). A missing ``run_id`` defaults
        to the Airflow run id, so a retry resumes the copy its first try started.
    :param image: worker image.
    :param source_conn_id: Airflow connection of the source database; becomes a Secret owned by
        the pod. Alternatively ``credentials_secret`` names an existing Secret.
    :param target_conn_id: Airflow connection of the target database.
    :param credentials_secret: existing Secret with ``source-dsn``/``target-dsn`` keys (or the keys
        given in ``credentials_keys``: ``{"source": "...", "target": "..."}``).
    :param work_queue: work-queue name: the worker takes items from it (``queue_mode`` one|drain).
    :param container_resources: container resources (defaults: 100m CPU, 128Mi request, 1Gi
        limit); ``worker_resources`` is its deprecated alias.
    :param keep_failed_pod: keep a failed pod (and its Secret) for debugging; default True.
    """

    BASE_CONTAINER_NAME = CONTAINER_NAME
    template_fields: Sequence[str] = (
        *KubernetesPodOperator.template_fields,
        "spec",
        "source_conn_id",
        "target_conn_id",
        "credentials_secret",
        "work_queue",
    )
    template_fields_renderers = {**KubernetesPodOperator.template_fields_renderers, "spec": "json"}
    operator_extra_links = (WorkerObjectLink(),)

    def __init__(
        self,
        *,
        spec: SpecInput,
        image: str,
        source_conn_id: str | None = None,
        target_conn_id: str | None = None,
        credentials_secret: str | None = None,
        credentials_keys: Mapping[str, str] | None = None,
        sslmode: str | None = None,
        tls_secret: str | None = None,
        work_queue: str | None = None,
        queue_mode: str | None = None,
        keep_failed_pod: bool = True,
        retries: int = 0,
        schedule_timeout_seconds: int = 300,
        startup_timeout_seconds: int = 300,
        active_deadline_seconds: int | None = None,
        log_events_on_startup: bool = False,
        log_pod_spec_on_failure: bool = False,
        worker_resources: Any = None,
        host_network: bool | None = None,
        **kwargs: Any,
    ) -> None:
        # Deprecated zdtp spellings, explicit so .partial() accepts them; KPO's names are primary.
        aliases = {"worker_resources": worker_resources, "host_network": host_network}
        kwargs.update({k: v for k, v in aliases.items() if v is not None})
        with as_airflow_error():
            translate_aliases(kwargs, operator=type(self).__name__)
            check_unsupported(kwargs, operator=type(self).__name__)
        kwargs.setdefault("on_finish_action", "keep_pod")  # deletion is decided in cleanup()
        super().__init__(
            image=image,
            retries=retries,
            schedule_timeout_seconds=schedule_timeout_seconds,
            startup_timeout_seconds=startup_timeout_seconds,
            active_deadline_seconds=active_deadline_seconds,
            log_events_on_startup=log_events_on_startup,
            log_pod_spec_on_failure=log_pod_spec_on_failure,
            **kwargs,
        )
        self.spec = spec
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.credentials_secret = credentials_secret
        self.credentials_keys = dict(credentials_keys) if credentials_keys else None
        self.sslmode = sslmode
        self.tls_secret = tls_secret
        self.work_queue = work_queue
        self.queue_mode = queue_mode
        self.keep_failed_pod = keep_failed_pod
        self._companions: list[Any] = []
        self._applied: list[dict] = []
        self._result: dict | None = None
        self._pushed = False
        self._reentered = False

    @cached_property
    def hook(self) -> ZdtpKubernetesHook:  # type: ignore[override]
        return KubeConnection(
            conn_id=self.kubernetes_conn_id,
            config_file=self.config_file,
            cluster_context=self.cluster_context,
            in_cluster=self.in_cluster,
        ).hook()

    # ------------------------------------------------------------ manifest

    def build_pod_request_obj(self, context: Context | None = None, *, dry_run: bool = False) -> V1Pod:
        """The worker pod from zdtp's workload layer, plus KPO's task-instance labels."""
        run_id = context["run_id"] if context else "dry-run"
        with as_airflow_error():
            spec = resolve_spec(self.spec, mode="full", run_id=run_id)
        if self.retries and spec.full.copy_mode != "resume":
            raise AirflowException(
                f"retries: {self.retries} retries need spec.full.copy_mode 'resume' "
                f"(got {spec.full.copy_mode!r}); a non-resumable copy must not be re-run blindly"
            )
        options = WorkloadOptions.from_operator(self)
        with as_airflow_error():
            options.validate()
        dsns = lookup_dsns(options, lookup=not dry_run)
        namespace = self.namespace or (None if dry_run else self.hook.get_namespace()) or "default"
        with as_airflow_error():
            rendered = render_pod(
                options,
                spec,
                namespace=namespace,
                run_id=run_id,
                task_id=self.task_id,
                try_number=int(context["ti"].try_number) if context else 0,
                name=self.name,
                dsns=dsns,
                queue=self.work_queue,
                queue_mode=self.queue_mode,
                active_deadline_seconds=self.active_deadline_seconds,
            )
        self._companions = rendered.companions
        pod = rendered.workload
        # KPO finds its pod again (retry, deferral) by these labels.
        pod.metadata.labels.update(self._get_ti_pod_labels(context))
        return pod

    # ------------------------------------------------------------ lifecycle

    def get_or_create_pod(self, pod_request_obj: V1Pod, context: Context) -> V1Pod:
        self._applied = apply_companions(self.hook, self._companions)
        if self._killed:
            # on_kill ran while the companions were written: it had no pod to delete, so this
            # call must not create one (Airflow lets execute go on after on_kill).
            delete_companions(self.hook, self._applied)
            raise WorkerKilled("task was killed before its worker pod was created")
        try:
            pod = super().get_or_create_pod(pod_request_obj, context)
        except Exception:
            delete_companions(self.hook, self._applied)
            raise
        self._worker_pod = (pod.metadata.namespace, pod.metadata.name)
        if self._killed:
            # Killed while the pod was being created: on_kill did not know it yet.
            self.pod_manager.delete_pod(pod)
            delete_companions(self.hook, self._applied)
            raise WorkerKilled("task was killed while its worker pod was created; pod deleted")
        if pod.metadata.name != pod_request_obj.metadata.name:
            # Re-attached to the pod of an earlier try: it has its own Secret already.
            delete_companions(self.hook, self._applied)
            return pod
        if self._applied:
            remote = self.hook.get_pod(pod.metadata.name, pod.metadata.namespace)
            owner = OwnerRef(api_version="v1", kind="Pod", name=remote.metadata.name, uid=remote.metadata.uid)
            adopt_companions(self.hook, self._applied, owner)
        return pod

    def execute(self, context: Context) -> Any:
        try:
            super().execute(context)
        except Exception as exc:
            if self._killed:
                raise WorkerKilled(f"task was killed; worker pod deleted ({exc})") from exc
            raise
        return self._finish(context)

    def invoke_defer_method(self, last_log_time: Any = None, context: Context | None = None) -> None:
        """KPO's deferral, unless the pod has finished by the time the task would defer.

        KPO checks for a finished pod before deferring, but on the pod object ``get_or_create_pod``
        returned (the create request: no status), so a short worker that ends before its task
        defers still defers, its trigger fires at once, and Airflow's stale-executor-event race
        (apache/airflow#66374) can fail the task although the pod succeeded. Here the pod is read
        after KPO has built its trigger, as the last step before the deferral leaves the
        operator; a finished pod goes through ``trigger_reentry`` in-process, exactly as KPO's own
        skip path does (same logs, callbacks, clean-up, result).

        Only on the first deferral: KPO's ``trigger_reentry`` re-defers (an ``error`` event while
        the pod still runs) expecting this call to raise, and goes on with the old event if not.
        """
        try:
            super().invoke_defer_method(last_log_time=last_log_time, context=context)
            return
        except TaskDeferred as deferral:
            first = context is not None and not self._reentered
            event = self._finished_pod_event(deferral, last_log_time) if first else None
            if event is None:
                raise _settled(deferral) from None
        self.log.info(
            "Pod %s/%s already %s before the task deferred: finishing in-process instead of "
            "deferring (avoids Airflow's stale-executor-event race, apache/airflow#66374)",
            event["namespace"],
            event["name"],
            "succeeded" if event["status"] == "success" else "failed",
        )
        self.trigger_reentry(context, event)

    def _finished_pod_event(self, deferral: TaskDeferred, last_log_time: Any) -> dict[str, Any] | None:
        """The event KPO's trigger would send at once for a finished pod; None while it runs."""
        trigger = deferral.trigger
        if not isinstance(trigger, KubernetesPodTrigger):
            return None
        try:
            pod = self.hook.get_pod(trigger.pod_name, trigger.pod_namespace)
        except Exception as exc:
            self.log.warning("Could not read pod %s before deferring (%s): deferring", trigger.pod_name, exc)
            return None
        state = trigger.define_pod_container_state(pod)
        if state not in (ContainerState.TERMINATED, ContainerState.FAILED):
            return None
        failed = state == ContainerState.FAILED
        return {
            "status": "failed" if failed else "success",
            "namespace": trigger.pod_namespace,
            "name": trigger.pod_name,
            "message": "Container failed" if failed else "Container succeeded",
            "last_log_time": last_log_time,
            **(self.trigger_kwargs or {}),
        }

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        self._reentered = True
        self._worker_pod = (event["namespace"], event["name"])
        super().trigger_reentry(context, event)
        return self._finish(context)

    def worker_object(self) -> tuple[str, str, str] | None:
        """(kind, namespace, name) of the worker pod, for :class:`WorkerObjectLink`."""
        ref = getattr(self, "_worker_pod", None)
        return ("Pod", *ref) if ref else None

    def _finish(self, context: Context) -> Any:
        if self._killed:
            # apache/airflow#73006: KPO would let this end SUCCESS.
            raise WorkerKilled("task was killed while the worker ran; its pod was deleted")
        if self._result is not None and not self._pushed:
            # KPO's do_xcom_push means "xcom sidecar" (off: it needs exec); push the summary here,
            # once (a pod finished before deferral passes trigger_reentry and then execute).
            context["ti"].xcom_push(key=XCOM_RETURN_KEY, value=self._result)
            self._pushed = True
        return self._result

    def cleanup(self, pod: V1Pod, remote_pod: V1Pod, xcom_result: dict | None = None, context=None) -> None:
        """Capture the result, then delete unless the pod failed and ``keep_failed_pod``."""
        if self._killed or not remote_pod:
            return
        fresh = self._reread(remote_pod)
        self._result = pod_result(fresh)
        phase = fresh.status.phase if fresh.status else None
        code, message = pod_exit(fresh)
        failed = phase != "Succeeded"
        if failed and self.keep_failed_pod and phase == "Failed":
            self.log.info("Keeping failed pod %s for debugging", fresh.metadata.name)
            self.patch_already_checked(fresh, reraise=False)
        else:
            self.log.info("Deleting pod %s (phase %s)", fresh.metadata.name, phase)
            self.pod_manager.delete_pod(fresh)
        if not failed:
            return
        detail = (self._result or {}).get("message") or message
        if phase in (None, "Pending") and not detail:
            waiting = pod_waiting_reasons([fresh])
            detail = "never started (schedule/startup timeout): " + ("; ".join(waiting) or "Pending")
        text = f"worker pod {fresh.metadata.name} failed (phase {phase}, exit code {code}): {detail}"
        if is_fatal([code]):
            raise AirflowFailException(f"{text} — exit {code} is not retryable")
        raise AirflowException(text)

    def _reread(self, pod: V1Pod) -> V1Pod:
        try:
            return self.hook.get_pod(pod.metadata.name, pod.metadata.namespace)
        except Exception:
            return pod
