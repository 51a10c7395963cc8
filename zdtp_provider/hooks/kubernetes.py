"""ZdtpKubernetesHook: the provider's KubernetesHook plus what zdtp needs and it lacks.

cncf-kubernetes' hook can create pods and Jobs but has no server-side apply, no Deployment
rollout status, scale or delete (DESIGN.md). This subclass adds them, every call retried on
transient errors (hooks.retry) and failing with the API server's own message. It reuses the
``kubernetes`` connection type; it is not registered as a connection type of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
from kubernetes.client import V1DeleteOptions, V1Deployment, V1Job, V1Pod

from zdtp_provider.hooks.retry import ZdtpApiError, api_call, server_reason
from zdtp_provider.k8s.labels import selector_string
from zdtp_provider.k8s.status import Rollout, rollout_status

FIELD_MANAGER = "zdtp"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"


class WritesRefused(Exception):
    """A write after the task was killed: the operator must stop, not create more objects."""


class ZdtpKubernetesHook(KubernetesHook):
    """Kubernetes API access for zdtp operators, triggers and sensors.

    :param connection_extras: the ``kubernetes`` connection's extras, resolved by the operator
        before deferring, so a trigger builds its client without a connection lookup in the
        triggerer (the same approach KubernetesPodOperator takes).
    """

    hook_name = "zdtp Kubernetes"

    def __init__(self, *args: Any, connection_extras: Mapping[str, Any] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._connection_extras = dict(connection_extras) if connection_extras is not None else None
        self._writes_refused: str | None = None

    def refuse_writes(self, reason: str) -> None:
        """From now on create/apply raise :class:`WritesRefused`; deletes still work.

        Airflow's SIGTERM handler only calls ``on_kill()``: the interrupted ``execute`` then goes
        on, and without this it would create the workload the kill already tried to remove.
        """
        self._writes_refused = reason

    def _check_writable(self, manifest: Mapping[str, Any]) -> None:
        if self._writes_refused:
            meta = manifest.get("metadata", {})
            raise WritesRefused(
                f"not writing {manifest.get('kind')} {meta.get('namespace')}/{meta.get('name')}: "
                f"{self._writes_refused}"
            )

    @cached_property
    def conn_extras(self) -> dict[str, Any]:
        if self._connection_extras is not None:
            return self._connection_extras
        return super().conn_extras

    # ------------------------------------------------------------ generic

    @api_call("server-side apply")
    def apply(self, manifest: Mapping[str, Any], *, field_manager: str = FIELD_MANAGER) -> Any:
        """Server-side apply ``manifest`` (Deployment, Secret or ConfigMap), taking ownership.

        ``force=True`` because zdtp is the authority over these objects; an unchanged manifest
        leaves ``metadata.generation`` as is, which makes re-running a task a no-op.
        """
        self._check_writable(manifest)
        kind = manifest["kind"]
        meta = manifest["metadata"]
        kwargs = {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "body": manifest,
            "field_manager": field_manager,
            "force": True,
            "_content_type": APPLY_CONTENT_TYPE,
        }
        if kind == "Deployment":
            return self.apps_v1_client.patch_namespaced_deployment(**kwargs)
        if kind == "Secret":
            return self.core_v1_client.patch_namespaced_secret(**kwargs)
        if kind == "ConfigMap":
            return self.core_v1_client.patch_namespaced_config_map(**kwargs)
        raise ValueError(f"apply: unsupported kind {kind!r}")

    @api_call("create object")
    def create(self, manifest: Mapping[str, Any]) -> Any:
        """Create a Pod/Job/Secret/ConfigMap; raises ZdtpApiError(reason=AlreadyExists) on a clash."""
        self._check_writable(manifest)
        kind = manifest["kind"]
        ns = manifest["metadata"]["namespace"]
        if kind == "Job":
            return self.batch_v1_client.create_namespaced_job(ns, manifest)
        if kind == "Secret":
            return self.core_v1_client.create_namespaced_secret(ns, manifest)
        if kind == "ConfigMap":
            return self.core_v1_client.create_namespaced_config_map(ns, manifest)
        if kind == "Pod":
            return self.core_v1_client.create_namespaced_pod(ns, manifest)
        raise ValueError(f"create: unsupported kind {kind!r}")

    @api_call("set owner reference")
    def set_owner(self, *, kind: str, name: str, namespace: str, owner_references: list[dict]) -> None:
        body = {"metadata": {"ownerReferences": owner_references}}
        if kind == "Secret":
            self.core_v1_client.patch_namespaced_secret(name, namespace, body)
        elif kind == "ConfigMap":
            self.core_v1_client.patch_namespaced_config_map(name, namespace, body)
        else:
            raise ValueError(f"set_owner: unsupported kind {kind!r}")

    @api_call("delete object")
    def delete(self, *, kind: str, name: str, namespace: str, propagation: str = "Foreground") -> bool:
        """Delete; ``False`` if it was already gone. Foreground: owned objects go first."""
        options = V1DeleteOptions(propagation_policy=propagation)
        api = {
            "Job": self.batch_v1_client.delete_namespaced_job,
            "Deployment": self.apps_v1_client.delete_namespaced_deployment,
            "Pod": self.core_v1_client.delete_namespaced_pod,
            "Secret": self.core_v1_client.delete_namespaced_secret,
            "ConfigMap": self.core_v1_client.delete_namespaced_config_map,
        }[kind]
        try:
            api(name, namespace, body=options)
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return False
            raise
        return True

    @api_call("list pods")
    def list_pods(self, namespace: str, labels: Mapping[str, str] | str) -> list[V1Pod]:
        selector = labels if isinstance(labels, str) else selector_string(labels)
        return self.core_v1_client.list_namespaced_pod(namespace, label_selector=selector).items

    @api_call("list events")
    def object_events(self, *, namespace: str, kind: str, name: str) -> list[str]:
        """Warning/Normal events about one object, oldest first, as ``Reason: message`` lines."""
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        events = self.core_v1_client.list_namespaced_event(namespace, field_selector=selector).items
        events.sort(key=lambda e: str(e.last_timestamp or e.event_time or e.metadata.creation_timestamp))
        return [f"{e.type} {e.reason}: {e.message}" for e in events]

    # ------------------------------------------------------------ Jobs

    @api_call("read Job")
    def read_job(self, name: str, namespace: str) -> V1Job | None:
        try:
            return self.batch_v1_client.read_namespaced_job(name, namespace)
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise

    @api_call("list Jobs")
    def find_jobs(self, namespace: str, labels: Mapping[str, str]) -> list[V1Job]:
        return self.batch_v1_client.list_namespaced_job(
            namespace, label_selector=selector_string(labels)
        ).items

    def job_pods(self, job: V1Job) -> list[V1Pod]:
        return self.list_pods(job.metadata.namespace, {"batch.kubernetes.io/job-name": job.metadata.name})

    # ------------------------------------------------------------ Deployments

    @api_call("read Deployment")
    def read_deployment(self, name: str, namespace: str) -> V1Deployment | None:
        try:
            return self.apps_v1_client.read_namespaced_deployment(name, namespace)
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise

    def rollout(self, name: str, namespace: str) -> Rollout:
        dep = self.read_deployment(name, namespace)
        if dep is None:
            raise ZdtpApiError(f"Deployment {namespace}/{name} not found", status=404, reason="NotFound")
        return rollout_status(dep)

    @api_call("scale Deployment")
    def scale(self, name: str, namespace: str, replicas: int) -> None:
        """Scale through the ``scale`` subresource (RBAC: ``deployments/scale`` patch)."""
        self.apps_v1_client.patch_namespaced_deployment_scale(
            name, namespace, {"spec": {"replicas": replicas}}
        )

    @api_call("list ReplicaSets")
    def replica_sets(self, namespace: str, labels: Mapping[str, str]) -> list[Any]:
        return self.apps_v1_client.list_namespaced_replica_set(
            namespace, label_selector=selector_string(labels)
        ).items


def is_already_exists(exc: BaseException) -> bool:
    if isinstance(exc, ZdtpApiError):
        return exc.status == 409 and exc.reason == "AlreadyExists"
    return getattr(exc, "status", None) == 409 and server_reason(exc)[0] == "AlreadyExists"  # type: ignore[arg-type]
