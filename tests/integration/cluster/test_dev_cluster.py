"""Acceptance of the dev cluster: a real apiserver and controllers, KWOK-simulated pod fates."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devtools.k8s_objects import pod, restricted_pod_spec
from tests.conftest import REPO
from tests.fixtures.cluster import Cluster

pytestmark = pytest.mark.cluster


def wait_for(check: Callable[[], object], *, timeout: float = 60, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_server_is_v1_35_and_nodes_ready(cluster: Cluster) -> None:
    version = client.VersionApi(cluster.api).get_code()
    assert version.git_version.startswith("v1.35."), version.git_version
    nodes = cluster.core.list_node(label_selector="type=kwok").items
    assert len(nodes) >= 8
    pods_capacity = sum(int(n.status.allocatable["pods"]) for n in nodes)
    assert pods_capacity >= 1000
    for node in nodes:
        ready = {c.type: c.status for c in node.status.conditions}["Ready"]
        assert ready == "True", node.metadata.name
    kubectl = subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "version", "-o", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{_bin_dir()}:{os.environ['PATH']}"},
    )
    assert '"gitVersion": "v1.35.' in kubectl.stdout, kubectl.stdout + kubectl.stderr


def _bin_dir() -> Path:
    out = subprocess.run([str(REPO / "dev/cluster/build.sh")], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def test_deployment_becomes_available(cluster: Cluster, namespace: str) -> None:
    labels = {"app": "web"}
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=labels), spec=restricted_pod_spec(restart_policy="Always")
    )
    cluster.apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=1, selector=client.V1LabelSelector(match_labels=labels), template=template
            ),
        ),
    )

    def available() -> bool:
        status = cluster.apps.read_namespaced_deployment_status("web", namespace).status
        return status.available_replicas == 1

    wait_for(available, what="Deployment available")


def test_job_with_three_completions_completes(cluster: Cluster, namespace: str) -> None:
    cluster.batch.create_namespaced_job(
        namespace,
        client.V1Job(
            metadata=client.V1ObjectMeta(name="batch"),
            spec=client.V1JobSpec(
                completions=3,
                parallelism=2,
                backoff_limit=0,
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(annotations={"sim.zdtp.io/delay": "1s"}),
                    spec=restricted_pod_spec(),
                ),
            ),
        ),
    )

    def complete() -> bool:
        status = cluster.batch.read_namespaced_job_status("batch", namespace).status
        return any(c.type == "Complete" and c.status == "True" for c in status.conditions or [])

    wait_for(complete, what="Job Complete")
    assert cluster.batch.read_namespaced_job_status("batch", namespace).status.succeeded == 3


def test_bare_pod_succeeds_after_its_delay(cluster: Cluster, namespace: str) -> None:
    cluster.core.create_namespaced_pod(namespace, pod("once", annotations={"sim.zdtp.io/delay": "3s"}))
    wait_for(lambda: cluster.core.read_namespaced_pod("once", namespace).status.phase == "Running")
    running_since = time.monotonic()
    wait_for(lambda: cluster.core.read_namespaced_pod("once", namespace).status.phase == "Succeeded")
    assert time.monotonic() - running_since >= 2.0
    state = cluster.core.read_namespaced_pod("once", namespace).status.container_statuses[0].state
    assert state.terminated.exit_code == 0


def test_failing_pod_reports_exit_code_and_termination_message(cluster: Cluster, namespace: str) -> None:
    message = '{"status":"error","exit_code":78,"message":"bad spec"}'
    annotations = {"sim.zdtp.io/exit-code": "78", "sim.zdtp.io/message": message}
    cluster.core.create_namespaced_pod(namespace, pod("broken", annotations=annotations))
    wait_for(lambda: cluster.core.read_namespaced_pod("broken", namespace).status.phase == "Failed")
    terminated = (
        cluster.core.read_namespaced_pod("broken", namespace).status.container_statuses[0].state.terminated
    )
    assert terminated.exit_code == 78
    assert terminated.message == message


def test_always_pod_crash_loop_grows_restart_count(cluster: Cluster, namespace: str) -> None:
    annotations = {"sim.zdtp.io/crash-loop": "true", "sim.zdtp.io/delay": "1s"}
    cluster.core.create_namespaced_pod(
        namespace, pod("crashy", annotations=annotations, restart_policy="Always")
    )

    def restarts() -> int:
        statuses = cluster.core.read_namespaced_pod("crashy", namespace).status.container_statuses or []
        return statuses[0].restart_count if statuses else 0

    wait_for(lambda: restarts() >= 3, timeout=60, what="restartCount >= 3")
    assert cluster.core.read_namespaced_pod("crashy", namespace).status.phase == "Running"


def test_pod_logs_are_readable(cluster: Cluster, namespace: str) -> None:
    cluster.core.create_namespaced_pod(namespace, pod("talker", annotations={"sim.zdtp.io/delay": "30s"}))
    wait_for(lambda: cluster.core.read_namespaced_pod("talker", namespace).status.phase == "Running")
    text = cluster.core.read_namespaced_pod_log("talker", namespace)
    assert "simulated by KWOK" in text


def test_apiserver_rejects_job_with_restart_policy_always(cluster: Cluster, namespace: str) -> None:
    job = client.V1Job(
        metadata=client.V1ObjectMeta(name="invalid"),
        spec=client.V1JobSpec(
            template=client.V1PodTemplateSpec(spec=restricted_pod_spec(restart_policy="Always"))
        ),
    )
    with pytest.raises(ApiException) as err:
        cluster.batch.create_namespaced_job(namespace, job)
    assert err.value.status == 422
    assert "restartPolicy" in err.value.body


def test_restricted_namespace_rejects_privileged_pod(cluster: Cluster, namespace: str) -> None:
    bad = client.V1Pod(
        metadata=client.V1ObjectMeta(name="root"),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="main",
                    image="busybox",
                    security_context=client.V1SecurityContext(privileged=True),
                )
            ]
        ),
    )
    with pytest.raises(ApiException) as err:
        cluster.core.create_namespaced_pod(namespace, bad)
    assert err.value.status == 403
    assert "violates PodSecurity" in err.value.body


def _up(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "dev/cluster/up.sh")],
        env={**os.environ, "ZDTP_STATE": str(tmp_path), "ZDTP_CLUSTER_NAME": "zdtp-badinput", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cluster_up_without_go_fails_with_one_line(tmp_path: Path) -> None:
    proc = _up({"PATH": "/usr/bin:/bin", "ZDTP_CACHE": str(tmp_path / "cache")}, tmp_path)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines == [lines[0]] and "Go toolchain not found" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_cluster_up_with_port_in_use_fails_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _up({"ZDTP_APISERVER_PORT": str(port)}, tmp_path)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port} is in use" in lines[0], proc.stderr


def test_indexed_job_index_fates_apply_to_first_attempt_only(cluster: Cluster, namespace: str) -> None:
    annotations = {
        "sim.zdtp.io/delay": "1s",
        "sim.zdtp.io/exit-code-index-1": "75",
        "sim.zdtp.io/exit-code-index-3": "78",
        "sim.zdtp.io/message-index-3": "bad spec",
    }
    policy = client.V1PodFailurePolicy(
        rules=[
            client.V1PodFailurePolicyRule(
                action="FailIndex",
                on_exit_codes=client.V1PodFailurePolicyOnExitCodesRequirement(operator="In", values=[65, 78]),
            )
        ]
    )
    cluster.batch.create_namespaced_job(
        namespace,
        client.V1Job(
            metadata=client.V1ObjectMeta(name="indexed"),
            spec=client.V1JobSpec(
                completions=5,
                parallelism=5,
                completion_mode="Indexed",
                backoff_limit_per_index=2,
                pod_failure_policy=policy,
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(annotations=annotations), spec=restricted_pod_spec()
                ),
            ),
        ),
    )

    def finished() -> client.V1JobStatus | None:
        status = cluster.batch.read_namespaced_job_status("indexed", namespace).status
        done = any(c.type in ("Complete", "Failed") and c.status == "True" for c in status.conditions or [])
        return status if done else None

    status = wait_for(finished, timeout=90, what="indexed Job finished")
    assert status.completed_indexes == "0-2,4"
    assert status.failed_indexes == "3"
    pods = cluster.core.list_namespaced_pod(namespace, label_selector="job-name=indexed").items
    by_index: dict[str, list[int]] = {}
    for p in pods:
        index = p.metadata.annotations["batch.kubernetes.io/job-completion-index"]
        by_index.setdefault(index, []).append(p.status.container_statuses[0].state.terminated.exit_code)
    assert sorted(by_index["1"]) == [0, 75]  # retried once, then succeeded
    assert by_index["3"] == [78]  # failed its index without retry
    failed = next(p for p in pods if p.status.container_statuses[0].state.terminated.exit_code == 78)
    assert failed.status.container_statuses[0].state.terminated.message == "bad spec"
