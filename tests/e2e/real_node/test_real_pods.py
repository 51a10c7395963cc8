"""Real pods on the kubelet node: the worker image really copies rows, a failing worker's message
reaches the pod status through the termination-message file, kubelet restarts a Deployment's
container that was killed from outside, a work-queue Job's pods share a queue exactly once, and
memory limits really apply (cgroup v1 on this VM)."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from kubernetes import client

from devtools.ports import free_port
from devtools.real_node import RealNode, container_host_pid, pod_placement
from tests.fixtures.cluster import Cluster
from tests.fixtures.postgres import PgServer
from tests.integration.worker_cdc.helpers import wait_equal
from tests.integration.worker_full.helpers import execute, fingerprint, make_spec, scalar, spec_dict
from zdtp_worker.full import enqueue_chunks

pytestmark = [pytest.mark.realnode, pytest.mark.cluster, pytest.mark.postgres]

CREDS = "/var/run/secrets/zdtp"


def wait_for(what: str, check: Callable[[], Any], *, timeout: float = 120, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def dsn_secret(cluster: Cluster, namespace: str, *, source: str, target: str) -> str:
    name = f"dsn-{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": name},
            "type": "Opaque",
            "stringData": {"source-dsn": source, "target-dsn": target},
        },
    )
    return name


def worker_pod_spec(node: RealNode, *, args: list[str], spec_json: str, secret: str, **extra: Any) -> dict:
    """The worker as the provider runs it, on the real node; hostNetwork reaches 127.0.0.1."""
    container = {
        "name": "worker",
        "image": node.worker_image,
        "imagePullPolicy": "Never",
        "args": args,
        "env": [
            {"name": "ZDTP_WORKER_SPEC", "value": spec_json},
            {"name": "ZDTP_SOURCE_DSN_FILE", "value": f"{CREDS}/source-dsn"},
            {"name": "ZDTP_TARGET_DSN_FILE", "value": f"{CREDS}/target-dsn"},
        ],
        "volumeMounts": [
            {"name": "creds", "mountPath": CREDS, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        **extra,
    }
    return {
        **pod_placement(),
        "hostNetwork": True,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 10,
        "containers": [container],
        "volumes": [
            {"name": "creds", "secret": {"secretName": secret, "defaultMode": 0o440}},
            {"name": "tmp", "emptyDir": {}},
        ],
        "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
    }


def run_pod(cluster: Cluster, namespace: str, name: str, spec: dict, *, timeout: float = 180) -> Any:
    cluster.core.create_namespaced_pod(
        namespace, {"metadata": {"name": name}, "spec": {**spec, "restartPolicy": "Never"}}
    )

    def finished() -> Any:
        pod = cluster.core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    return wait_for(f"pod {name} to finish", finished, timeout=timeout)


def terminated(pod: Any) -> client.V1ContainerStateTerminated:
    status = pod.status.container_statuses[0]
    assert status.state.terminated is not None, status
    return status.state.terminated


def test_full_sync_pod_copies_source_to_target(
    cluster: Cluster, real_node: RealNode, node_namespace: str, source_dsn: str, target_dsn: str
) -> None:
    rows = 50_000
    execute(
        source_dsn,
        "CREATE TABLE items (id bigint PRIMARY KEY, name text, price numeric(12,2), seen timestamptz)",
    )
    execute(
        source_dsn,
        "INSERT INTO items SELECT g, 'item ' || g || ' ü', g * 1.25, "
        "timestamptz '2024-01-01' + g * interval '1 s' FROM generate_series(1, %s) g",
        (rows,),
    )
    secret = dsn_secret(cluster, node_namespace, source=source_dsn, target=target_dsn)
    spec = json.dumps(spec_dict(["items"], run_id="real-1", chunk_rows=10_000, verify="checksum"))
    pod = run_pod(
        cluster,
        node_namespace,
        "full-sync",
        worker_pod_spec(real_node, args=["full"], spec_json=spec, secret=secret),
    )

    assert pod.spec.node_name == real_node.name
    state = terminated(pod)
    assert (pod.status.phase, state.exit_code) == ("Succeeded", 0), state.message
    result = json.loads(state.message)  # the worker's summary, read from /dev/termination-log
    assert result["status"] == "ok" and result["rows"] == rows
    assert fingerprint(source_dsn, "items") == fingerprint(target_dsn, "items")
    assert fingerprint(target_dsn, "items")[0] == rows
    # Logs come from the real container through the apiserver and the kubelet.
    log = cluster.core.read_namespaced_pod_log("full-sync", node_namespace)
    assert '"status": "ok"' in log or '"status":"ok"' in log


def test_exit_78_reports_the_workers_message_in_the_pod_status(
    cluster: Cluster,
    real_node: RealNode,
    node_namespace: str,
    pg_server: PgServer,
    source_dsn: str,
    target_dsn: str,
) -> None:
    secret = dsn_secret(cluster, node_namespace, source=source_dsn, target=target_dsn)
    bad = json.dumps({"mode": "full", "task": "Not_A_Label", "run_id": "r", "tables": [{"source": "t"}]})
    pod = run_pod(
        cluster,
        node_namespace,
        "bad-config",
        worker_pod_spec(real_node, args=["full"], spec_json=bad, secret=secret),
    )

    state = terminated(pod)
    assert (pod.status.phase, state.exit_code) == ("Failed", 78)
    assert state.reason == "Error"
    result = json.loads(state.message)
    assert result["status"] == "error" and result["exit_code"] == 78
    assert "DNS-1123" in result["message"] and "Not_A_Label" in result["message"]
    # The credentials the pod had mounted (both DSNs carry the server's password) reach neither
    # the pod object nor its log.
    assert pg_server.password and pg_server.password in source_dsn
    assert pg_server.password not in json.dumps(cluster.api.sanitize_for_serialization(pod))
    assert pg_server.password not in cluster.core.read_namespaced_pod_log("bad-config", node_namespace)


def test_wrong_password_fails_78_and_no_credential_reaches_status_or_log(
    cluster: Cluster,
    real_node: RealNode,
    node_namespace: str,
    pg_server: PgServer,
    source_dsn: str,
    target_dsn: str,
) -> None:
    execute(source_dsn, "CREATE TABLE t (id int PRIMARY KEY)")
    wrong = f"wrong-{uuid.uuid4().hex}"
    bad_target = target_dsn.replace(f":{pg_server.password}@", f":{wrong}@")
    assert wrong in bad_target
    secret = dsn_secret(cluster, node_namespace, source=source_dsn, target=bad_target)
    spec = json.dumps(spec_dict(["t"], run_id="real-pw"))
    pod_spec = worker_pod_spec(real_node, args=["full"], spec_json=spec, secret=secret)
    pod = run_pod(cluster, node_namespace, "wrong-pw", pod_spec)

    state = terminated(pod)
    assert (pod.status.phase, state.exit_code) == ("Failed", 78), state.message
    assert "password authentication failed" in state.message
    # The worker read both DSNs (it connected with them); neither password may come back out.
    log = cluster.core.read_namespaced_pod_log("wrong-pw", node_namespace)
    shown = state.message + log + json.dumps(cluster.api.sanitize_for_serialization(pod))
    for password in (wrong, pg_server.password):
        assert password not in shown


def test_killed_incremental_container_is_restarted_by_kubelet(
    cluster: Cluster,
    real_node: RealNode,
    node_namespace: str,
    pg_server: PgServer,
    source_dsn: str,
    target_dsn: str,
) -> None:
    execute(source_dsn, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    port = free_port()
    task = f"cdc-{uuid.uuid4().hex[:10]}"
    spec = json.dumps(
        {
            "mode": "incremental",
            "task": task,
            "run_id": "real",
            "tables": [{"source": "t"}],
            "incremental": {"batch_max_seconds": 0.2, "health_port": port},
        }
    )
    secret = dsn_secret(cluster, node_namespace, source=source_dsn, target=target_dsn)
    probe = {"httpGet": {"host": "127.0.0.1", "port": port, "path": "/readyz"}, "periodSeconds": 1}
    pod_spec = worker_pod_spec(
        real_node,
        args=["incremental"],
        spec_json=spec,
        secret=secret,
        readinessProbe=probe,
        livenessProbe={**probe, "httpGet": {**probe["httpGet"], "path": "/healthz"}, "failureThreshold": 30},
    )
    labels = {"app.kubernetes.io/name": "zdtp-worker", "zdtp.io/task": task}
    deployment = {
        "metadata": {"name": task, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "Recreate"},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
    cluster.apps.create_namespaced_deployment(node_namespace, deployment)
    selector = ",".join(f"{k}={v}" for k, v in labels.items())

    def ready_status(min_restarts: int = 0) -> Any:
        pods = cluster.core.list_namespaced_pod(node_namespace, label_selector=selector).items
        for pod in pods:
            for status in pod.status.container_statuses or []:
                if status.ready and status.restart_count >= min_restarts:
                    return pod, status
        return None

    try:
        pod, status = wait_for("the CDC worker to be Ready", ready_status, timeout=120)
        assert pod.spec.node_name == real_node.name
        execute(source_dsn, "INSERT INTO t SELECT g, 'before' FROM generate_series(1, 1000) g")
        wait_equal(source_dsn, target_dsn, ["t"], timeout=60)

        # Kill the worker's process from outside the cluster, as an OOM kill or a crash would.
        pid = container_host_pid(status.container_id)
        os.kill(pid, signal.SIGKILL)
        # Changes written while the worker is down arrive after the restart, exactly once.
        with psycopg.connect(source_dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO t SELECT g, 'while down' FROM generate_series(1001, 2000) g")
            conn.execute("UPDATE t SET v = 'updated' WHERE id % 10 = 0")
            conn.execute("DELETE FROM t WHERE id % 7 = 0")

        pod, status = wait_for("kubelet to restart the container", lambda: ready_status(1), timeout=180)
        assert status.restart_count >= 1
        assert status.last_state.terminated is not None
        assert status.last_state.terminated.exit_code == 137  # SIGKILL
        assert container_host_pid(status.container_id) != pid
        wait_equal(source_dsn, target_dsn, ["t"], timeout=90)
        assert fingerprint(source_dsn, "t") == fingerprint(target_dsn, "t")
    finally:
        # Stop the worker before the fixtures drop its databases (it holds a replication slot).
        cluster.apps.delete_namespaced_deployment(task, node_namespace, propagation_policy="Foreground")
        wait_for(
            "the worker pod to go",
            lambda: not cluster.core.list_namespaced_pod(node_namespace, label_selector=selector).items,
            timeout=60,
        )


def test_three_job_pods_drain_a_50_chunk_queue_exactly_once(
    cluster: Cluster, real_node: RealNode, node_namespace: str, source_dsn: str, target_dsn: str
) -> None:
    execute(source_dsn, "CREATE TABLE t (id uuid PRIMARY KEY, v int)")
    execute(source_dsn, "INSERT INTO t SELECT md5(g::text)::uuid, g FROM generate_series(1, 50000) g")
    planned = make_spec(["t"], run_id="q-real", chunk_rows=1000, queue="chunks")
    assert enqueue_chunks(planned, source_dsn=source_dsn, target_dsn=target_dsn) == 50
    # The pods get a table-less spec: the queue is their work.
    spec = spec_dict(["t"], run_id="q-real", progress_interval_seconds=30)
    spec["tables"] = []
    secret = dsn_secret(cluster, node_namespace, source=source_dsn, target=target_dsn)
    pod_spec = worker_pod_spec(
        real_node, args=["full", "--queue", "chunks"], spec_json=json.dumps(spec), secret=secret
    )
    cluster.batch.create_namespaced_job(
        node_namespace,
        {
            "metadata": {"name": "drain"},
            "spec": {
                "parallelism": 3,  # work-queue Job: no completions; done when the pods are
                "backoffLimit": 0,
                "template": {"spec": {**pod_spec, "restartPolicy": "Never"}},
            },
        },
    )

    def finished() -> Any:
        job = cluster.batch.read_namespaced_job("drain", node_namespace)
        conditions = {c.type for c in job.status.conditions or [] if c.status == "True"}
        return conditions & {"Complete", "Failed"}

    assert wait_for("the queue Job to finish", finished, timeout=240) == {"Complete"}
    pods = cluster.core.list_namespaced_pod(node_namespace, label_selector="job-name=drain").items
    assert len(pods) == 3 and {p.spec.node_name for p in pods} == {real_node.name}
    results = [json.loads(terminated(p).message) for p in pods]
    assert [r["status"] for r in results] == ["ok"] * 3
    assert sum(r["chunks"] for r in results) == 50  # every chunk copied by exactly one pod
    assert sum(r["rows"] for r in results) == 50000
    assert scalar(target_dsn, "SELECT count(*) FROM zdtp.work_queue WHERE state <> 'done'") == 0
    assert fingerprint(source_dsn, "t") == fingerprint(target_dsn, "t")


def test_memory_limit_is_enforced_by_the_cgroup(
    cluster: Cluster, real_node: RealNode, node_namespace: str
) -> None:
    # cgroup v1 (hybrid) on this VM: the limit must still bite, or a runaway worker takes the node.
    grab = "b = bytearray(300 * 1024 * 1024); print('not killed')"
    pod = run_pod(
        cluster,
        node_namespace,
        "oom",
        {
            **pod_placement(),
            "automountServiceAccountToken": False,
            "securityContext": {"runAsUser": 10001, "runAsGroup": 10001},
            "containers": [
                {
                    "name": "grab",
                    "image": real_node.worker_image,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", grab],
                    "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
                }
            ],
        },
    )
    state = terminated(pod)
    assert (pod.status.phase, state.exit_code, state.reason) == ("Failed", 137, "OOMKilled")
