"""How one workload gets its spec and credentials: the companion objects and the pod wiring.

Decides, purely, whether the spec goes inline or into a ConfigMap, and whether credentials come
from a Secret zdtp creates (named after the workload, owned by it once it exists) or one the user
named. Returns the companions to create and the sources the container builder needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kubernetes.client import V1ConfigMap, V1Secret

from zdtp_provider.k8s.pod import CredentialsSource, SpecSource
from zdtp_provider.k8s.secret import (
    QUEUE_KEY,
    ROLE_KEYS,
    SPEC_ENV_MAX_BYTES,
    credentials_secret,
    spec_config_map,
)


@dataclass(frozen=True)
class WorkloadInputs:
    spec: SpecSource
    credentials: CredentialsSource | None
    companions: list[V1Secret | V1ConfigMap] = field(default_factory=list)
    content: dict[str, str] = field(default_factory=dict)  # for a config hash only, never logged


def workload_inputs(
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    spec_files: Mapping[str, str],
    dsns: Mapping[str, str] | None = None,
    user_secret: CredentialsSource | None = None,
    index_template: str | None = None,
    force_config_map: bool = False,
) -> WorkloadInputs:
    """Companions for workload ``name``.

    ``spec_files`` maps file name → spec JSON. A single small spec goes inline as env; several
    (one per Indexed Job index, read through ``index_template``) or a large one go to a ConfigMap.
    """
    if dsns and user_secret:
        raise ValueError("credentials: both connection DSNs and a user Secret given")
    companions: list[V1Secret | V1ConfigMap] = []
    content: dict[str, str] = {}
    inline = (
        len(spec_files) == 1
        and index_template is None
        and not force_config_map
        and len(next(iter(spec_files.values())).encode()) <= SPEC_ENV_MAX_BYTES
    )
    if inline:
        spec = SpecSource(inline_json=next(iter(spec_files.values())))
    else:
        companions.append(spec_config_map(name=name, namespace=namespace, labels=labels, files=spec_files))
        file_name = index_template or next(iter(spec_files))
        spec = SpecSource(config_map=name, file_name=file_name)
    content.update({f"spec/{k}": v for k, v in spec_files.items()})
    credentials = user_secret
    if dsns:
        companions.append(credentials_secret(name=name, namespace=namespace, labels=labels, dsns=dsns))
        # The default keys mount source and target; a queue URL adds ZDTP_QUEUE_DSN_FILE.
        keys = dict(ROLE_KEYS) if QUEUE_KEY in dsns else None
        credentials = CredentialsSource(secret_name=name, keys=keys)
        content.update({f"credentials/{k}": v for k, v in dsns.items()})
    elif user_secret:
        content["credentials/secret"] = user_secret.secret_name
    return WorkloadInputs(spec=spec, credentials=credentials, companions=companions, content=content)
