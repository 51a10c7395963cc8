"""The incremental (CDC) worker's Deployment.

``replicas: 1`` and ``strategy: Recreate``: a logical replication slot admits one consumer, so
the old pod must be gone before the new one starts (RollingUpdate would briefly run two). The
pod template carries a hash of the spec and credentials so changing either rolls the pod, while
an unchanged config yields a byte-identical manifest: server-side apply is then a no-op and no
new ReplicaSet appears. ``minReadySeconds`` keeps a worker that passes its probes and then
crashes (bad credentials found late, a slot another consumer holds) from counting as rolled out.
"""

from __future__ import annotations

from collections.abc import Mapping

from kubernetes.client import (
    V1Deployment,
    V1DeploymentSpec,
    V1DeploymentStrategy,
    V1LabelSelector,
    V1ObjectMeta,
    V1PodTemplateSpec,
)

from zdtp_provider.k8s.pod import WorkerContainer, build_pod_spec

CONFIG_HASH_ANNOTATION = "zdtp.io/config-hash"


def worker_deployment(
    cfg: WorkerContainer,
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    selector: Mapping[str, str],
    config_hash: str,
    replicas: int = 1,
    pod_annotations: Mapping[str, str] | None = None,
    progress_deadline_seconds: int = 600,
    min_ready_seconds: int = 5,
    pod_kwargs: Mapping | None = None,
) -> V1Deployment:
    if not set(selector.items()) <= set(labels.items()):
        raise ValueError("selector labels must be a subset of the pod labels")
    if cfg.health_port is None:
        raise ValueError("an incremental worker needs a health_port for its probes")
    if replicas not in (0, 1):
        raise ValueError(f"replicas: must be 0 or 1 (one replication-slot consumer), got {replicas!r}")
    if not 0 <= min_ready_seconds < progress_deadline_seconds:
        raise ValueError(
            f"min_ready_seconds: must be >= 0 and below progress_deadline_seconds "
            f"({progress_deadline_seconds}), got {min_ready_seconds!r}"
        )
    annotations = {**dict(pod_annotations or {}), CONFIG_HASH_ANNOTATION: config_hash}
    return V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=V1ObjectMeta(name=name, namespace=namespace, labels=dict(labels)),
        spec=V1DeploymentSpec(
            replicas=replicas,
            selector=V1LabelSelector(match_labels=dict(selector)),
            strategy=V1DeploymentStrategy(type="Recreate"),
            revision_history_limit=3,
            progress_deadline_seconds=progress_deadline_seconds,
            min_ready_seconds=min_ready_seconds,
            template=V1PodTemplateSpec(
                metadata=V1ObjectMeta(labels=dict(labels), annotations=annotations),
                spec=build_pod_spec(cfg, restart_policy="Always", **dict(pod_kwargs or {})),
            ),
        ),
    )
