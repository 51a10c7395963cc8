"""Incremental (CDC) sync operators: apply, stop, resume and delete the worker's Deployment.

cncf-kubernetes has no Deployment operator at all. IncrementalSyncOperator server-side applies
(field manager ``zdtp``) the Deployment built by zdtp_provider.k8s.deployment plus its credentials
Secret (and spec ConfigMap when large), owner-referenced to the Deployment, then waits for the
rollout. The manifest is deterministic — no run id, no timestamps — so re-running with the same
config changes nothing (no new ReplicaSet), while a changed spec, credential or image rolls out
exactly one new ReplicaSet (``Recreate``: never two consumers of one replication slot).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowException

from zdtp_provider.hooks.kubernetes import WritesRefused
from zdtp_provider.k8s.secret import OwnerRef
from zdtp_provider.links import WorkerObjectLink
from zdtp_provider.operators._companions import adopt_companions, apply_companions, delete_companions
from zdtp_provider.operators._defer import defer_unless_done
from zdtp_provider.operators._deployment_target import (
    DeleteIncrementalSyncOperator,
    ResumeIncrementalSyncOperator,
    StopIncrementalSyncOperator,
)
from zdtp_provider.operators._inputs import as_airflow_error, default_deferrable, lookup_dsns
from zdtp_provider.operators._kube_operator import (
    POD_TEMPLATE_FIELDS,
    PodArgumentsMixin,
    ZdtpKubeOperator,
)
from zdtp_provider.triggers.deployment import ON_KILL_ACTIONS, ZdtpRolloutTrigger, rollout_event
from zdtp_provider.workload import Rendered, WorkloadOptions, deployment_name, render_deployment, resolve_spec
from zdtp_provider.workload.specs import STREAM_RUN_ID, SpecInput

DEPLOYMENT_STATE_KEY = "zdtp_deployment"


class IncrementalSyncOperator(PodArgumentsMixin, ZdtpKubeOperator):
    """Apply the incremental worker's Deployment and wait until it is Available.

    Takes KubernetesPodOperator's pod arguments (``container_resources``, ``affinity``,
    ``tolerations``, ``env_vars``, ``volumes``, ``pod_template_file``...) for the worker pod.

    :param spec: incremental WorkerSpec (templated). ``run_id`` defaults to ``"stream"``: a
        stream outlives DAG runs, and a per-run id would roll the pod on every run.
    :param name: Deployment name (default ``zdtp-<task>-<worker>-cdc``).
    :param on_kill_action: what a kill during the rollout does: ``scale_to_zero`` (default),
        ``delete`` or ``keep``.
    :param min_ready_seconds: how long the worker must stay Ready before the rollout counts as
        done (Deployment ``minReadySeconds``), so a worker that crashes right after start fails it.
    :param wait: wait for the rollout (default) or return right after the apply.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = (*ZdtpKubeOperator.template_fields, *POD_TEMPLATE_FIELDS, "spec", "name")
    template_fields_renderers = {"spec": "json"}
    operator_extra_links = (WorkerObjectLink(),)

    def __init__(
        self,
        *,
        spec: SpecInput,
        image: str,
        name: str | None = None,
        source_conn_id: str | None = None,
        target_conn_id: str | None = None,
        credentials_secret: str | None = None,
        credentials_keys: Mapping[str, str] | None = None,
        sslmode: str | None = None,
        tls_secret: str | None = None,
        progress_deadline_seconds: int = 600,
        min_ready_seconds: int = 5,
        deferrable: bool | None = None,
        wait: bool = True,
        on_kill_action: str = "scale_to_zero",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if on_kill_action not in ON_KILL_ACTIONS:
            raise AirflowException(
                f"on_kill_action: must be one of {ON_KILL_ACTIONS}, got {on_kill_action!r}"
            )
        self.spec = spec
        self.image = image
        self.name = name
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.credentials_secret = credentials_secret
        self.credentials_keys = dict(credentials_keys) if credentials_keys else None
        self.sslmode = sslmode
        self.tls_secret = tls_secret
        self.progress_deadline_seconds = progress_deadline_seconds
        self.min_ready_seconds = min_ready_seconds
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.wait = wait
        self.on_kill_action = on_kill_action
        self._target: tuple[str, str] | None = None

    def render(self) -> Rendered:
        """Deployment + companion objects; pure apart from the connection lookup."""
        options = WorkloadOptions.from_operator(self)
        with as_airflow_error():
            spec = resolve_spec(self.spec, mode="incremental", run_id=STREAM_RUN_ID)
            options.validate()
            return render_deployment(
                options,
                spec,
                namespace=self.resolved_namespace(),
                name=self.name,
                dsns=lookup_dsns(options),
                progress_deadline_seconds=self.progress_deadline_seconds,
                min_ready_seconds=self.min_ready_seconds,
            )

    def execute(self, context: Context) -> Any:
        rendered = self.render()  # validation first: nothing applied on bad input
        name, namespace = rendered.name, rendered.namespace
        self._target = (name, namespace)
        existed = self.hook.read_deployment(name, namespace) is not None
        applied: list[dict] = []
        try:
            applied = apply_companions(self.hook, rendered.companions)
            dep = self.hook.apply(rendered.body())
        except WritesRefused:
            if not existed:  # an existing stream's Secret belongs to its Deployment: keep it
                delete_companions(self.hook, applied)
            raise AirflowException(
                f"task was killed before Deployment {namespace}/{name} was applied"
            ) from None
        if applied:
            owner = OwnerRef(api_version="apps/v1", kind="Deployment", name=name, uid=dep.metadata.uid)
            adopt_companions(self.hook, applied, owner)
        if (store := context.get("task_state_store")) is not None:
            store.set(DEPLOYMENT_STATE_KEY, {"name": name, "namespace": namespace})
        self.log.info("Applied Deployment %s/%s (generation %s)", namespace, name, dep.metadata.generation)
        if not self.wait:
            return self._summary(name, namespace)
        if self.deferrable:
            # An unchanged re-apply is rolled out already: concluded here, no deferral.
            return defer_unless_done(
                self,
                context,
                check=lambda: rollout_event(self.hook, name, namespace),
                trigger=ZdtpRolloutTrigger(
                    on_kill_action=self.on_kill_action, **self.trigger_kwargs(name=name, namespace=namespace)
                ),
                method_name="execute_complete",
                where=(name, namespace),
            )
        while True:
            if self._killed:
                raise AirflowException(f"task was killed during the rollout of {namespace}/{name}")
            event = rollout_event(self.hook, name, namespace)
            if event is not None:
                return self.execute_complete(context, {"name": name, "namespace": namespace, **event})
            time.sleep(self.poll_interval)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        self._target = (event["name"], event["namespace"])
        if event["status"] != "success":
            raise AirflowException(f"Deployment {event['namespace']}/{event['name']}: {event['message']}")
        self.log.info("%s", event["message"])
        return self._summary(event["name"], event["namespace"])

    def worker_object(self) -> tuple[str, str, str] | None:
        """(kind, namespace, name) of the worker Deployment, for :class:`WorkerObjectLink`."""
        return ("Deployment", self._target[1], self._target[0]) if self._target else None

    def _summary(self, name: str, namespace: str) -> dict[str, Any]:
        dep = self.hook.read_deployment(name, namespace)
        return {
            "name": name,
            "namespace": namespace,
            "generation": dep.metadata.generation if dep else None,
            "available_replicas": (dep.status.available_replicas or 0) if dep and dep.status else 0,
        }

    def on_kill(self) -> None:
        self._killed = True
        self.hook.refuse_writes("the task was killed")
        if not self._target or self.on_kill_action == "keep":
            return
        name, namespace = self._target
        try:
            if self.on_kill_action == "delete":
                self.hook.delete(kind="Deployment", name=name, namespace=namespace)
            else:
                self.hook.scale(name, namespace, 0)
        except Exception:
            self.log.exception("on_kill: could not %s %s/%s", self.on_kill_action, namespace, name)


__all__ = [
    "DeleteIncrementalSyncOperator",
    "IncrementalSyncOperator",
    "ResumeIncrementalSyncOperator",
    "StopIncrementalSyncOperator",
    "deployment_name",
]
