"""Turn PodArguments into what the pure builders take: container extras, pod-spec kwargs and an
optional pod template, plus :func:`apply_template`, which merges a template *under* zdtp's pod.

Arguments arrive as KPO accepts them (models, or dicts in the API's camelCase or snake_case), and
leave as ``kubernetes.client`` models. The merge follows KPO's precedence (operator arguments over
``full_pod_spec`` over ``pod_template_file``), then re-imposes what zdtp never lets a template
change: the restricted security context of every container and the pod, no service-account
token, the restart policy the workload kind needs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import (
    V1Affinity,
    V1Container,
    V1EnvFromSource,
    V1EnvVar,
    V1LocalObjectReference,
    V1ObjectMeta,
    V1Pod,
    V1PodSpec,
    V1ResourceRequirements,
    V1Toleration,
    V1Volume,
    V1VolumeMount,
)

from zdtp_provider.k8s.security import container_security_context, pod_security_context
from zdtp_provider.workload.errors import WorkloadError
from zdtp_provider.workload.pod_args import PodArguments

_DESERIALIZER = None


def to_model(value: Any, cls: type, *, field_name: str) -> Any:
    """A ``cls`` model from a model or a dict (camelCase or snake_case keys)."""
    if value is None or isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise WorkloadError(f"{field_name}: expected a {cls.__name__} or a dict, got {type(value).__name__}")
    global _DESERIALIZER
    if _DESERIALIZER is None:
        from kubernetes.client import ApiClient, Configuration

        _DESERIALIZER = ApiClient(configuration=Configuration())
    data = {cls.attribute_map.get(k, k): v for k, v in value.items()}
    unknown = set(data) - set(cls.attribute_map.values())
    if unknown:
        raise WorkloadError(f"{field_name}: unknown {cls.__name__} field(s) {sorted(unknown)}")
    return _DESERIALIZER._ApiClient__deserialize_model(data, cls)


def to_models(values: Any, cls: type, *, field_name: str) -> list[Any]:
    if not values:
        return []
    if not isinstance(values, (list, tuple)):
        raise WorkloadError(f"{field_name}: expected a list, got {type(values).__name__}")
    return [to_model(v, cls, field_name=f"{field_name}[{i}]") for i, v in enumerate(values)]


def to_toleration(value: Any) -> V1Toleration:
    return to_model(value, V1Toleration, field_name="tolerations")


@dataclass(frozen=True)
class PodParts:
    """PodArguments as builder inputs."""

    resources: V1ResourceRequirements | None = None
    image_pull_policy: str | None = None
    env: list[V1EnvVar] = field(default_factory=list)
    env_from: list[V1EnvFromSource] = field(default_factory=list)
    mounts: list[V1VolumeMount] = field(default_factory=list)
    pod_kwargs: dict[str, Any] = field(default_factory=dict)
    template: V1Pod | None = None


def pod_parts(args: PodArguments) -> PodParts:
    """Normalise ``args``; raises WorkloadError naming the argument that does not fit."""
    env = args.env_vars or []
    if isinstance(env, Mapping):
        env = [V1EnvVar(name=str(k), value=str(v)) for k, v in env.items()]
    if isinstance(args.image_pull_secrets, str):
        pull = [V1LocalObjectReference(name=s.strip()) for s in args.image_pull_secrets.split(",") if s]
    else:
        pull = to_models(args.image_pull_secrets, V1LocalObjectReference, field_name="image_pull_secrets")
    if args.node_selector is not None and not isinstance(args.node_selector, Mapping):
        raise WorkloadError("node_selector: expected a mapping of label to value")
    return PodParts(
        resources=to_model(
            args.container_resources, V1ResourceRequirements, field_name="container_resources"
        ),
        image_pull_policy=args.image_pull_policy,
        env=to_models(env, V1EnvVar, field_name="env_vars"),
        env_from=to_models(args.env_from, V1EnvFromSource, field_name="env_from"),
        mounts=to_models(args.volume_mounts, V1VolumeMount, field_name="volume_mounts"),
        pod_kwargs={
            **placement_kwargs(
                service_account_name=args.service_account_name,
                node_selector=args.node_selector,
                tolerations=args.tolerations,
                host_network=args.hostnetwork,
            ),
            "affinity": to_model(args.affinity or None, V1Affinity, field_name="affinity"),
            "image_pull_secrets": pull or None,
            "volumes": to_models(args.volumes, V1Volume, field_name="volumes") or None,
            "init_containers": to_models(args.init_containers, V1Container, field_name="init_containers")
            or None,
            "priority_class_name": args.priority_class_name or None,
            "runtime_class_name": args.runtime_class_name or None,
            "scheduler_name": args.schedulername or None,
            "dns_policy": args.dnspolicy or None,
            "termination_grace_period_seconds": args.termination_grace_period,
        },
        template=load_template(args),
    )


def placement_kwargs(
    *,
    service_account_name: str | None,
    node_selector: Mapping[str, str] | None,
    tolerations: Any,
    host_network: bool,
) -> dict[str, Any]:
    """Where the pod runs: ``build_pod_spec`` keyword arguments (tolerations as models)."""
    return {
        "service_account_name": service_account_name or None,
        "node_selector": dict(node_selector) if node_selector else None,
        "tolerations": to_models(tolerations, V1Toleration, field_name="tolerations") or None,
        "host_network": bool(host_network),
    }


def load_template(args: PodArguments) -> V1Pod | None:
    """``pod_template_file``/``pod_template_dict`` reconciled with ``full_pod_spec`` (KPO's order)."""
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    base = None
    if args.pod_template_file:
        try:
            with open(args.pod_template_file) as stream:
                import yaml

                base = PodGenerator.deserialize_model_dict(yaml.safe_load(stream))
        except OSError as exc:
            raise WorkloadError(f"pod_template_file: cannot read {args.pod_template_file!r}: {exc}") from None
    elif args.pod_template_dict:
        base = PodGenerator.deserialize_model_dict(dict(args.pod_template_dict))
    full = to_model(args.full_pod_spec, V1Pod, field_name="full_pod_spec")
    if base is not None and full is not None:
        return PodGenerator.reconcile_pods(base, full)
    return full or base


def apply_template(
    template: V1Pod | None, metadata: V1ObjectMeta, spec: V1PodSpec
) -> tuple[V1ObjectMeta, V1PodSpec]:
    """Merge ``template`` under zdtp's pod metadata/spec, then re-impose zdtp's security."""
    if template is None:
        return metadata, spec
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    # Like KPO, the template's first container merges into the worker container (by position);
    # zdtp's name, command and termination message settings are restored afterwards.
    base = copy.deepcopy(template)
    merged = PodGenerator.reconcile_pods(base, V1Pod(metadata=metadata, spec=spec))
    out = merged.spec
    out.restart_policy = spec.restart_policy
    out.security_context = pod_security_context()
    out.automount_service_account_token = False
    out.host_network = spec.host_network
    for container in [*(out.containers or []), *(out.init_containers or [])]:
        container.security_context = container_security_context()
    main = out.containers[0]
    worker = spec.containers[0]
    main.name, main.command, main.args = worker.name, worker.command, worker.args
    main.termination_message_path = worker.termination_message_path
    main.termination_message_policy = worker.termination_message_policy
    meta = merged.metadata or metadata
    meta.name, meta.namespace = metadata.name, metadata.namespace
    return meta, out
