"""Security contexts that satisfy Pod Security ``restricted`` (the strictest built-in level).

Non-root with a fixed numeric UID (``runAsNonRoot`` alone fails images whose USER is a name),
no privilege escalation, every capability dropped, seccomp ``RuntimeDefault``, read-only root
filesystem with a small writable ``/tmp`` emptyDir, and no service-account token: the worker
never talks to the Kubernetes API.
"""

from __future__ import annotations

from kubernetes.client import (
    V1Capabilities,
    V1EmptyDirVolumeSource,
    V1PodSecurityContext,
    V1SeccompProfile,
    V1SecurityContext,
    V1Volume,
    V1VolumeMount,
)

WORKER_UID = 10001
TMP_VOLUME = "tmp"


def pod_security_context(*, uid: int = WORKER_UID) -> V1PodSecurityContext:
    return V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=uid,
        fs_group=uid,
        seccomp_profile=V1SeccompProfile(type="RuntimeDefault"),
    )


def container_security_context(*, uid: int = WORKER_UID) -> V1SecurityContext:
    return V1SecurityContext(
        allow_privilege_escalation=False,
        capabilities=V1Capabilities(drop=["ALL"]),
        privileged=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        run_as_user=uid,
        seccomp_profile=V1SeccompProfile(type="RuntimeDefault"),
    )


def tmp_volume() -> tuple[V1Volume, V1VolumeMount]:
    """A memory-limited scratch dir, since the root filesystem is read-only."""
    return (
        V1Volume(name=TMP_VOLUME, empty_dir=V1EmptyDirVolumeSource(size_limit="64Mi")),
        V1VolumeMount(name=TMP_VOLUME, mount_path="/tmp"),
    )
