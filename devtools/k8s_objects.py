"""Small builders for test/demo Kubernetes objects that pass Pod Security ``restricted``."""

from __future__ import annotations

from kubernetes import client


def restricted_container(name: str = "main", image: str = "zdtp/worker:dev") -> client.V1Container:
    return client.V1Container(
        name=name,
        image=image,
        security_context=client.V1SecurityContext(
            allow_privilege_escalation=False,
            capabilities=client.V1Capabilities(drop=["ALL"]),
            run_as_non_root=True,
            read_only_root_filesystem=True,
        ),
        resources=client.V1ResourceRequirements(requests={"cpu": "10m", "memory": "16Mi"}),
    )


def restricted_pod_spec(*, restart_policy: str = "Never", image: str = "zdtp/worker:dev") -> client.V1PodSpec:
    return client.V1PodSpec(
        restart_policy=restart_policy,
        containers=[restricted_container(image=image)],
        security_context=client.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=10001,
            seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
        ),
        automount_service_account_token=False,
    )


def pod(
    name: str, *, annotations: dict[str, str] | None = None, restart_policy: str = "Never"
) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, annotations=annotations or {}),
        spec=restricted_pod_spec(restart_policy=restart_policy),
    )
