"""The worker container and pod spec, shared by the bare Pod, Job and Deployment builders.

One function decides how the WorkerSpec reaches the container (env ``ZDTP_WORKER_SPEC`` when
small, a mounted ConfigMap file + ``ZDTP_WORKER_SPEC_FILE`` when large) and how credentials do
(Secret files only). The pod-level choices that differ per workload kind — restart policy,
deadlines — are parameters, everything security-relevant is fixed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kubernetes.client import (
    V1Affinity,
    V1Container,
    V1ContainerPort,
    V1EnvFromSource,
    V1EnvVar,
    V1EnvVarSource,
    V1HTTPGetAction,
    V1LocalObjectReference,
    V1ObjectFieldSelector,
    V1ObjectMeta,
    V1Pod,
    V1PodSpec,
    V1Probe,
    V1ResourceRequirements,
    V1Toleration,
    V1Volume,
    V1VolumeMount,
)

from zdtp_provider.k8s.secret import credentials_mount, spec_mount
from zdtp_provider.k8s.security import container_security_context, pod_security_context, tmp_volume
from zdtp_worker.contract.envelope import (
    INDEX_ENV,
    SPEC_DIR,
    SPEC_ENV,
    SPEC_FILE_ENV,
    TERMINATION_LOG,
    WORKER_COMMAND,
)

CONTAINER_NAME = "worker"
# The health server's port also serves /metrics; deploy/monitoring/podmonitor.yaml scrapes it by
# this name, so the number (the spec's ``incremental.health_port``) may change freely.
METRICS_PORT_NAME = "metrics"
JOB_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def default_resources() -> V1ResourceRequirements:
    """Requests small enough to pack, a memory limit so one runaway worker cannot take a node."""
    return V1ResourceRequirements(
        requests={"cpu": "100m", "memory": "128Mi"},
        limits={"memory": "1Gi"},
    )


@dataclass(frozen=True)
class SpecSource:
    """Where the container finds its WorkerSpec: inline JSON, or a ConfigMap file.

    ``file_name`` may contain ``$(ZDTP_JOB_INDEX)`` for Indexed Jobs: Kubernetes expands it from
    the env var defined just before it, so each index reads its own spec file.
    """

    inline_json: str | None = None
    config_map: str | None = None
    file_name: str = "spec.json"

    def __post_init__(self) -> None:
        if (self.inline_json is None) == (self.config_map is None):
            raise ValueError("SpecSource needs exactly one of inline_json or config_map")


@dataclass(frozen=True)
class CredentialsSource:
    secret_name: str
    keys: Mapping[str, str] | None = None


@dataclass(frozen=True)
class WorkerContainer:
    """Everything that varies between worker containers; security settings are not among it."""

    image: str
    args: Sequence[str]
    spec: SpecSource
    credentials: CredentialsSource | None = None
    resources: V1ResourceRequirements | None = None
    image_pull_policy: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    health_port: int | None = None
    # User additions (KPO's env_vars, env_from, volume_mounts): appended after zdtp's own entries,
    # which they may not replace (zdtp's names win on a clash).
    extra_env: Sequence[V1EnvVar] = ()
    env_from: Sequence[V1EnvFromSource] = ()
    extra_mounts: Sequence[V1VolumeMount] = ()


def build_container(cfg: WorkerContainer) -> tuple[V1Container, list[V1Volume]]:
    """The worker container plus the volumes it mounts."""
    tmp_vol, tmp_mount = tmp_volume()
    volumes: list[V1Volume] = [tmp_vol]
    mounts: list[V1VolumeMount] = [tmp_mount]
    env: list[V1EnvVar] = [V1EnvVar(name=k, value=v) for k, v in sorted(cfg.env.items())]
    if "$(" + INDEX_ENV + ")" in cfg.spec.file_name:
        env.append(
            V1EnvVar(
                name=INDEX_ENV,
                value_from=V1EnvVarSource(
                    field_ref=V1ObjectFieldSelector(
                        field_path=f"metadata.annotations['{JOB_INDEX_ANNOTATION}']"
                    )
                ),
            )
        )
    if cfg.spec.inline_json is not None:
        env.append(V1EnvVar(name=SPEC_ENV, value=cfg.spec.inline_json))
    else:
        vol, mount = spec_mount(cfg.spec.config_map)  # type: ignore[arg-type]
        volumes.append(vol)
        mounts.append(mount)
        env.append(V1EnvVar(name=SPEC_FILE_ENV, value=f"{SPEC_DIR}/{cfg.spec.file_name}"))
    if cfg.credentials is not None:
        vol, mount, cred_env = credentials_mount(cfg.credentials.secret_name, keys=cfg.credentials.keys)
        volumes.append(vol)
        mounts.append(mount)
        env.extend(cred_env)
    own_env = {e.name for e in env}
    env.extend(e for e in cfg.extra_env if e.name not in own_env)
    own_paths = {m.mount_path for m in mounts}
    mounts.extend(m for m in cfg.extra_mounts if m.mount_path not in own_paths)
    health: dict[str, object] = {}
    if cfg.health_port is not None:
        health = {
            "ports": [
                V1ContainerPort(name=METRICS_PORT_NAME, container_port=cfg.health_port, protocol="TCP")
            ],
            "liveness_probe": V1Probe(
                http_get=V1HTTPGetAction(path="/healthz", port=cfg.health_port),
                period_seconds=10,
                failure_threshold=3,
                timeout_seconds=2,
            ),
            "readiness_probe": V1Probe(
                http_get=V1HTTPGetAction(path="/readyz", port=cfg.health_port),
                period_seconds=5,
                failure_threshold=3,
                timeout_seconds=2,
            ),
        }
    container = V1Container(
        name=CONTAINER_NAME,
        image=cfg.image,
        image_pull_policy=cfg.image_pull_policy,
        command=list(WORKER_COMMAND),
        args=list(cfg.args),
        env=env,
        env_from=list(cfg.env_from) or None,
        volume_mounts=mounts,
        resources=cfg.resources or default_resources(),
        security_context=container_security_context(),
        termination_message_path=TERMINATION_LOG,
        termination_message_policy="File",
        **health,
    )
    return container, volumes


def build_pod_spec(
    cfg: WorkerContainer,
    *,
    restart_policy: str,
    active_deadline_seconds: int | None = None,
    termination_grace_period_seconds: int | None = None,
    service_account_name: str | None = None,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[V1Toleration] | None = None,
    priority_class_name: str | None = None,
    host_network: bool = False,
    affinity: V1Affinity | None = None,
    image_pull_secrets: Sequence[V1LocalObjectReference] | None = None,
    volumes: Sequence[V1Volume] | None = None,
    init_containers: Sequence[V1Container] | None = None,
    runtime_class_name: str | None = None,
    scheduler_name: str | None = None,
    dns_policy: str | None = None,
) -> V1PodSpec:
    """The pod spec around the worker container; user ``volumes`` may not reuse zdtp's names and
    user ``init_containers`` run under the same restricted security context as the worker."""
    container, own_volumes = build_container(cfg)
    own_names = {v.name for v in own_volumes}
    clash = sorted(v.name for v in volumes or () if v.name in own_names)
    if clash:
        raise ValueError(f"volumes: {clash} are names zdtp uses for its own volumes")
    inits = [copy.deepcopy(c) for c in init_containers or ()]
    for init in inits:
        init.security_context = container_security_context()
    return V1PodSpec(
        containers=[container],
        init_containers=inits or None,
        volumes=[*own_volumes, *(volumes or ())],
        affinity=affinity,
        image_pull_secrets=list(image_pull_secrets) if image_pull_secrets else None,
        runtime_class_name=runtime_class_name,
        scheduler_name=scheduler_name,
        dns_policy=dns_policy,
        restart_policy=restart_policy,
        security_context=pod_security_context(),
        automount_service_account_token=False,
        enable_service_links=False,
        service_account_name=service_account_name,
        active_deadline_seconds=active_deadline_seconds,
        termination_grace_period_seconds=termination_grace_period_seconds,
        node_selector=dict(node_selector) if node_selector else None,
        tolerations=list(tolerations) if tolerations else None,
        priority_class_name=priority_class_name,
        # Dev clusters whose databases listen on 127.0.0.1 only; refused by Pod Security
        # baseline/restricted, so a namespace has to allow it explicitly.
        host_network=True if host_network else None,
    )


def build_pod(
    cfg: WorkerContainer,
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
    **spec_kwargs,
) -> V1Pod:
    """A one-shot worker Pod: ``restartPolicy: Never``, the retry decision stays with Airflow."""
    return V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=V1ObjectMeta(
            name=name, namespace=namespace, labels=dict(labels), annotations=dict(annotations or {})
        ),
        spec=build_pod_spec(cfg, restart_policy="Never", **spec_kwargs),
    )
