"""Credentials and spec objects that feed a worker, and how a pod consumes them.

Credentials travel only as a Secret mounted as files (``ZDTP_SOURCE_DSN_FILE``...): never env
literals, args or annotations, so ``kubectl get pod -o yaml`` shows no password. The Secret (and
the spec ConfigMap when the spec is too large for an env var) is owner-referenced to the workload
so Kubernetes garbage-collects it with the Pod/Job/Deployment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from kubernetes.client import (
    V1ConfigMap,
    V1ConfigMapVolumeSource,
    V1EnvVar,
    V1ObjectMeta,
    V1OwnerReference,
    V1Secret,
    V1SecretVolumeSource,
    V1Volume,
    V1VolumeMount,
)

from zdtp_provider.k8s.labels import PART
from zdtp_worker.contract.envelope import CREDENTIALS_DIR, SPEC_DIR, dsn_file_env

SOURCE_KEY = "source-dsn"
TARGET_KEY = "target-dsn"
# A queue fan-out's Redis URL (queue_backend redis), mounted like the DSNs: ZDTP_QUEUE_DSN_FILE.
QUEUE_KEY = "queue-dsn"
ROLE_KEYS = {"source": SOURCE_KEY, "target": TARGET_KEY, "queue": QUEUE_KEY}
CREDENTIALS_VOLUME = "zdtp-credentials"
SPEC_VOLUME = "zdtp-spec"
# A user's Secret of CA/client certificates; connection strings point into it (see connections).
TLS_VOLUME = "zdtp-tls"
TLS_DIR = "/var/run/zdtp/tls"
# Env values beyond this go to a ConfigMap file: keeps pod specs small and under etcd limits.
SPEC_ENV_MAX_BYTES = 16 * 1024


@dataclass(frozen=True)
class OwnerRef:
    """The workload that owns a Secret/ConfigMap (known only after the workload exists)."""

    api_version: str
    kind: str
    name: str
    uid: str

    def to_model(self) -> V1OwnerReference:
        return V1OwnerReference(
            api_version=self.api_version,
            kind=self.kind,
            name=self.name,
            uid=self.uid,
            # Foreground deletion of the owner waits for this object too.
            block_owner_deletion=True,
            controller=False,
        )


def credentials_secret(
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    dsns: Mapping[str, str],
    owner: OwnerRef | None = None,
) -> V1Secret:
    """A Secret holding DSNs under ``source-dsn`` / ``target-dsn`` (and a Redis URL under
    ``queue-dsn``) keys."""
    unknown = set(dsns) - set(ROLE_KEYS.values())
    if unknown:
        raise ValueError(f"unknown credential keys {sorted(unknown)}")
    return V1Secret(
        api_version="v1",
        kind="Secret",
        metadata=_meta(name=name, namespace=namespace, labels=labels, part="credentials", owner=owner),
        type="Opaque",
        string_data=dict(dsns),
        immutable=False,
    )


def spec_config_map(
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    files: Mapping[str, str],
    owner: OwnerRef | None = None,
) -> V1ConfigMap:
    """A ConfigMap of worker spec JSON files (one per Indexed Job index, or one ``spec.json``)."""
    return V1ConfigMap(
        api_version="v1",
        kind="ConfigMap",
        metadata=_meta(name=name, namespace=namespace, labels=labels, part="spec", owner=owner),
        data=dict(files),
    )


def _meta(
    *, name: str, namespace: str, labels: Mapping[str, str], part: str, owner: OwnerRef | None
) -> V1ObjectMeta:
    return V1ObjectMeta(
        name=name,
        namespace=namespace,
        labels={**labels, PART: part},
        owner_references=[owner.to_model()] if owner else None,
    )


def credentials_mount(
    secret_name: str, *, keys: Mapping[str, str] | None = None
) -> tuple[V1Volume, V1VolumeMount, list[V1EnvVar]]:
    """Volume, mount and the ``*_DSN_FILE`` env vars pointing the worker at the mounted files.

    ``keys`` maps role (``source``/``target``) to the key inside the Secret, for a Secret the
    user owns whose keys differ from zdtp's defaults.
    """
    keys = dict(keys or {"source": SOURCE_KEY, "target": TARGET_KEY})
    volume = V1Volume(
        name=CREDENTIALS_VOLUME,
        secret=V1SecretVolumeSource(secret_name=secret_name, default_mode=0o440),
    )
    mount = V1VolumeMount(name=CREDENTIALS_VOLUME, mount_path=CREDENTIALS_DIR, read_only=True)
    env = [
        V1EnvVar(name=dsn_file_env(role), value=f"{CREDENTIALS_DIR}/{key}")
        for role, key in sorted(keys.items())
    ]
    return volume, mount, env


def tls_mount(secret_name: str) -> tuple[V1Volume, V1VolumeMount]:
    """The user's TLS Secret (``ca.crt``, client cert and key...) as read-only files in ``TLS_DIR``.

    Mode 0440: libpq refuses a client key readable by others; the pod's fsGroup gives the worker's
    group read access.
    """
    volume = V1Volume(
        name=TLS_VOLUME, secret=V1SecretVolumeSource(secret_name=secret_name, default_mode=0o440)
    )
    return volume, V1VolumeMount(name=TLS_VOLUME, mount_path=TLS_DIR, read_only=True)


def spec_mount(config_map_name: str) -> tuple[V1Volume, V1VolumeMount]:
    volume = V1Volume(name=SPEC_VOLUME, config_map=V1ConfigMapVolumeSource(name=config_map_name))
    return volume, V1VolumeMount(name=SPEC_VOLUME, mount_path=SPEC_DIR, read_only=True)


def content_hash(values: Mapping[str, str]) -> str:
    """Digest of Secret/ConfigMap content, put on a pod template so a change rolls it out.

    Only a truncated SHA-256 is exposed, never the content.
    """
    digest = hashlib.sha256()
    for key in sorted(values):
        digest.update(key.encode() + b"\0" + values[key].encode() + b"\0")
    return digest.hexdigest()[:16]
