"""PodArguments: KubernetesPodOperator's pod arguments, honoured by every zdtp workload kind.

An Airflow user already knows KPO's spellings (``container_resources``, ``hostnetwork``,
``affinity``, ``pod_template_file``...). zdtp accepts them on the Pod, Job and Deployment
operators alike and applies them under its restricted security context. The old zdtp names stay
for one release as deprecated aliases; an argument zdtp cannot honour without weakening the worker
(its own command, a looser security context, an exec sidecar) raises at construction, naming it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from zdtp_provider.workload.errors import WorkloadError

# Old zdtp argument → KPO spelling.
ALIASES = {"worker_resources": "container_resources", "host_network": "hostnetwork"}

# KPO arguments zdtp refuses, with the reason shown to the user. A value equal to KPO's default
# (None, empty, False) counts as "not given".
UNSUPPORTED = {
    "cmds": "the worker's command is fixed (zdtp-worker)",
    "arguments": "the worker's arguments come from the spec and operator options",
    "security_context": "worker pods always run under zdtp's restricted security context",
    "container_security_context": "worker pods always run under zdtp's restricted security context",
    "xcom_sidecar_container_security_context": "zdtp pushes the worker result without a sidecar",
    "do_xcom_push": "zdtp pushes the worker's result summary itself (no exec sidecar)",
    "automount_service_account_token": "the worker never talks to the Kubernetes API",
    "secrets": "give credentials as source_conn_id/target_conn_id or credentials_secret",
    "configmaps": "use env_from with a V1ConfigMapEnvSource instead",
    "ports": "the worker exposes only its health/metrics port",
    "hostname": "not supported for zdtp workers",
    "subdomain": "not supported for zdtp workers",
    "pod_runtime_info_envs": "use env_vars with a value_from field reference",
    "host_aliases": "not supported for zdtp workers",
    "dns_config": "not supported for zdtp workers",
}


@dataclass(frozen=True)
class PodArguments:
    """The KPO pod arguments zdtp honours, as given (normalised by :mod:`.pod_parts`)."""

    container_resources: Any = None
    image_pull_policy: str | None = None
    affinity: Any = None
    tolerations: Any = None
    node_selector: Mapping[str, str] | None = None
    image_pull_secrets: Any = None
    env_vars: Any = None
    env_from: Any = None
    volumes: Any = None
    volume_mounts: Any = None
    init_containers: Any = None
    priority_class_name: str | None = None
    hostnetwork: bool = False
    service_account_name: str | None = None
    labels: Mapping[str, str] | None = None
    annotations: Mapping[str, str] | None = None
    termination_grace_period: int | None = None
    runtime_class_name: str | None = None
    schedulername: str | None = None
    dnspolicy: str | None = None
    pod_template_file: str | None = None
    pod_template_dict: Mapping[str, Any] | None = None
    full_pod_spec: Any = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_object(cls, obj: Any) -> PodArguments:
        """Read the arguments from an operator's (rendered) attributes of the same names."""
        return cls(**{name: getattr(obj, name, None) for name in cls.names()})


def _given(value: Any) -> bool:
    return value not in (None, False, "", [], {}, ())


def check_unsupported(kwargs: Mapping[str, Any], *, operator: str) -> None:
    """Raise naming the first KPO argument zdtp cannot honour that was actually given."""
    for name, why in UNSUPPORTED.items():
        if name in kwargs and _given(kwargs[name]):
            raise WorkloadError(f"{name}: {operator} does not support this argument ({why})")


def take_pod_arguments(kwargs: dict[str, Any], *, operator: str) -> dict[str, Any]:
    """Pop the pod arguments (KPO spellings, deprecated aliases translated) out of ``kwargs``.

    Unsupported KPO arguments raise :class:`WorkloadError`; everything else stays in ``kwargs``.
    """
    translate_aliases(kwargs, operator=operator)
    check_unsupported(kwargs, operator=operator)
    return {name: kwargs.pop(name) for name in PodArguments.names() if name in kwargs}


def translate_aliases(kwargs: dict[str, Any], *, operator: str) -> None:
    """Rename deprecated zdtp spellings to KPO's in place, warning once per use."""
    for old, new in ALIASES.items():
        if old not in kwargs:
            continue
        value = kwargs.pop(old)
        if new in kwargs and _given(kwargs[new]):
            raise WorkloadError(f"{old}: give only {new} (the KPO spelling); {old} is its deprecated alias")
        warnings.warn(
            f"{operator}: {old!r} is deprecated, use KubernetesPodOperator's {new!r}",
            DeprecationWarning,
            stacklevel=4,
        )
        kwargs[new] = value
