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
from kubernetes.client import V1ResourceRequirements

from zdtp_provider.k8s import manifest
from zdtp_provider.k8s.deployment import worker_deployment
from zdtp_provider.k8s.inputs import workload_inputs
from zdtp_provider.k8s.labels import selector_labels, worker_labels
from zdtp_provider.k8s.names import dns_label, validate_dns_label
from zdtp_provider.k8s.pod import WorkerContainer
from zdtp_provider.k8s.secret import OwnerRef, content_hash
from zdtp_provider.operators._base import ZdtpBaseOperator
from zdtp_provider.operators._common import (
    SpecInput,
    check,
    placement_kwargs,
    resolve_credentials,
    resolve_spec,
    validate_common,
)
from zdtp_provider.operators._companions import adopt_companions, apply_companions
from zdtp_provider.triggers.deployment import ON_KILL_ACTIONS, ZdtpRolloutTrigger, rollout_event
from zdtp_worker.contract.envelope import incremental_args

DEPLOYMENT_STATE_KEY = "zdtp_deployment"


def deployment_name(task: str, worker: str = "w0") -> str:
    """The Deployment name zdtp derives for a sync task's incremental worker."""
    return dns_label("zdtp", task, worker, "cdc")


class IncrementalSyncOperator(ZdtpBaseOperator):
    """Apply the incremental worker's Deployment and wait until it is Available.

    :param spec: incremental WorkerSpec (templated). ``run_id`` defaults to ``"stream"``: a
        stream outlives DAG runs, and a per-run id would roll the pod on every run.
    :param name: Deployment name (default ``zdtp-<task>-<worker>-cdc``).
    :param on_kill_action: what a kill during the rollout does: ``scale_to_zero`` (default),
        ``delete`` or ``keep``.
    :param wait: wait for the rollout (default) or return right after the apply.
    """

    template_fields: Sequence[str] = (
        *ZdtpBaseOperator.template_fields,
        "spec",
        "image",
        "name",
        "labels",
        "annotations",
        "source_conn_id",
        "target_conn_id",
        "credentials_secret",
    )
    template_fields_renderers = {"spec": "json"}

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
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        worker_resources: V1ResourceRequirements | None = None,
        image_pull_policy: str | None = None,
        service_account_name: str | None = None,
        node_selector: Mapping[str, str] | None = None,
        tolerations: Sequence[Any] | None = None,
        host_network: bool = False,
        progress_deadline_seconds: int = 600,
        deferrable: bool = True,
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
        self.labels = dict(labels or {})
        self.annotations = dict(annotations or {})
        self.worker_resources = worker_resources
        self.image_pull_policy = image_pull_policy
        self.service_account_name = service_account_name
        self.node_selector = dict(node_selector) if node_selector else None
        self.tolerations = list(tolerations) if tolerations else None
        self.host_network = host_network
        self.progress_deadline_seconds = progress_deadline_seconds
        self.deferrable = deferrable
        self.wait = wait
        self.on_kill_action = on_kill_action
        self._target: tuple[str, str] | None = None

    def render_manifests(self) -> tuple[dict, list]:
        """Deployment manifest + companion objects; pure apart from the connection lookup."""
        spec = resolve_spec(self.spec, mode="incremental", run_id="stream")
        validate_common(
            namespace=self.namespace, image=self.image, labels=self.labels, annotations=self.annotations
        )
        name = self.name or deployment_name(spec.task, spec.worker)
        check(validate_dns_label, name, field="name")
        creds = resolve_credentials(
            source_conn_id=self.source_conn_id,
            target_conn_id=self.target_conn_id,
            credentials_secret=self.credentials_secret,
            credentials_keys=self.credentials_keys,
        )
        namespace = self.resolved_namespace()
        labels = worker_labels(
            task=spec.task, worker=spec.worker, component="incremental-sync", extra=self.labels
        )
        inputs = workload_inputs(
            name=name,
            namespace=namespace,
            labels=labels,
            spec_files={"spec.json": spec.to_json()},
            dsns=creds.dsns,
            user_secret=creds.user_secret,
        )
        cfg = WorkerContainer(
            image=self.image,
            args=incremental_args(),
            spec=inputs.spec,
            credentials=inputs.credentials,
            resources=self.worker_resources,
            image_pull_policy=self.image_pull_policy,
            health_port=spec.incremental.health_port,
        )
        dep = check(
            worker_deployment,
            cfg,
            name=name,
            namespace=namespace,
            labels=labels,
            selector=selector_labels(task=spec.task, worker=spec.worker),
            config_hash=content_hash(inputs.content),
            pod_annotations=self.annotations,
            progress_deadline_seconds=self.progress_deadline_seconds,
            pod_kwargs=placement_kwargs(
                service_account_name=self.service_account_name,
                node_selector=self.node_selector,
                tolerations=self.tolerations,
                host_network=self.host_network,
            ),
        )
        return manifest(dep), inputs.companions

    def execute(self, context: Context) -> Any:
        body, companions = self.render_manifests()  # validation first: nothing applied on bad input
        name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
        self._target = (name, namespace)
        applied = apply_companions(self.hook, companions)
        dep = self.hook.apply(body)
        if applied:
            owner = OwnerRef(api_version="apps/v1", kind="Deployment", name=name, uid=dep.metadata.uid)
            adopt_companions(self.hook, applied, owner)
        if (store := context.get("task_state_store")) is not None:
            store.set(DEPLOYMENT_STATE_KEY, {"name": name, "namespace": namespace})
        self.log.info("Applied Deployment %s/%s (generation %s)", namespace, name, dep.metadata.generation)
        if not self.wait:
            return self._summary(name, namespace)
        if self.deferrable:
            self.defer(
                trigger=ZdtpRolloutTrigger(
                    on_kill_action=self.on_kill_action, **self.trigger_kwargs(name=name, namespace=namespace)
                ),
                method_name="execute_complete",
            )
        while True:
            if self._killed:
                raise AirflowException(f"task was killed during the rollout of {namespace}/{name}")
            event = rollout_event(self.hook, name, namespace)
            if event is not None:
                return self.execute_complete(context, {"name": name, "namespace": namespace, **event})
            time.sleep(self.poll_interval)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        if event["status"] != "success":
            raise AirflowException(f"Deployment {event['namespace']}/{event['name']}: {event['message']}")
        self.log.info("%s", event["message"])
        return self._summary(event["name"], event["namespace"])

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


class _DeploymentTargetOperator(ZdtpBaseOperator):
    """Acts on an existing incremental Deployment named directly or by task/worker."""

    template_fields: Sequence[str] = (*ZdtpBaseOperator.template_fields, "name", "task")

    def __init__(
        self,
        *,
        name: str | None = None,
        task: str | None = None,
        worker: str = "w0",
        timeout: float = 300,
        **kw,
    ) -> None:
        super().__init__(**kw)
        self.name = name
        self.task = task
        self.worker = worker
        self.timeout = timeout

    def target(self) -> tuple[str, str]:
        if not self.name and not self.task:
            raise AirflowException("name: give the Deployment name or the sync task")
        name = self.name or deployment_name(self.task, self.worker)  # type: ignore[arg-type]
        return check(validate_dns_label, name, field="name"), self.resolved_namespace()

    def wait_until(self, check_fn, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not check_fn():
            if time.monotonic() > deadline:
                raise AirflowException(f"timed out after {self.timeout}s waiting for {what}")
            time.sleep(self.poll_interval)


class StopIncrementalSyncOperator(_DeploymentTargetOperator):
    """Scale the worker to 0 and wait until its pod is gone (the slot keeps its position)."""

    def execute(self, context: Context) -> None:
        name, namespace = self.target()
        self.hook.scale(name, namespace, 0)

        def stopped() -> bool:
            dep = self.hook.read_deployment(name, namespace)
            if dep is None:
                raise AirflowException(f"Deployment {namespace}/{name} not found")
            return not self.hook.list_pods(namespace, dep.spec.selector.match_labels)

        self.wait_until(stopped, f"the pods of {namespace}/{name} to stop")


class ResumeIncrementalSyncOperator(_DeploymentTargetOperator):
    """Scale the worker back to 1 and wait until it is Available."""

    def execute(self, context: Context) -> None:
        name, namespace = self.target()
        self.hook.scale(name, namespace, 1)

        def available() -> bool:
            event = rollout_event(self.hook, name, namespace)
            if event and event["status"] != "success":
                raise AirflowException(f"Deployment {namespace}/{name}: {event['message']}")
            return event is not None

        self.wait_until(available, f"{namespace}/{name} to become available")


class DeleteIncrementalSyncOperator(_DeploymentTargetOperator):
    """Delete the Deployment (Foreground) and make sure no owned object is left behind."""

    def execute(self, context: Context) -> None:
        name, namespace = self.target()
        dep = self.hook.read_deployment(name, namespace)
        if dep is None:
            self.log.info("Deployment %s/%s does not exist: nothing to delete", namespace, name)
            return
        self.hook.delete(kind="Deployment", name=name, namespace=namespace)
        self.wait_until(
            lambda: self.hook.read_deployment(name, namespace) is None, f"{namespace}/{name} to go"
        )
        # Companions are garbage-collected through their owner reference; remove any whose
        # adoption never happened (a crash between apply and adopt).
        for kind in ("Secret", "ConfigMap"):
            self.hook.delete(kind=kind, name=name, namespace=namespace, propagation="Background")
        self.wait_until(
            lambda: not self.hook.list_pods(namespace, dep.spec.selector.match_labels),
            f"the pods of {namespace}/{name} to go",
        )
