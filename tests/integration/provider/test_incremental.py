"""Incremental operators and sensor on the real dev cluster."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import pytest
from airflow.sdk.exceptions import AirflowException
from kubernetes import watch as k8s_watch

from tests.integration.provider._airflow import finish, start_dag, write_dag
from tests.integration.provider._context import context
from tests.integration.provider.conftest import wait_for
from zdtp_provider.operators.incremental import (
    DeleteIncrementalSyncOperator,
    IncrementalSyncOperator,
    ResumeIncrementalSyncOperator,
    StopIncrementalSyncOperator,
)
from zdtp_provider.sensors.incremental import IncrementalSyncSensor
from zdtp_provider.triggers.deployment import ZdtpRolloutTrigger

pytestmark = [pytest.mark.cluster, pytest.mark.airflow]

SPEC = {"task": "orders", "tables": [{"source": "public.orders"}]}
NAME = "zdtp-orders-w0-cdc"


class PodWatch:
    """Every pod event of a namespace, from a watch (not sampling: no overlap can slip between
    two polls), with the most pods ever not yet finished at once. A pod counts from creation
    until it is gone or Succeeded/Failed, terminating or not: Recreate waits for exactly that.
    Errors in the watch thread are re-raised by ``__exit__``."""

    def __init__(self, cluster, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.active: dict[str, str] = {}  # uid -> name
        self.seen: set[str] = set()
        self.max_live = 0
        self.history: list[tuple[str, str, str]] = []
        self.error: BaseException | None = None
        self._watch = k8s_watch.Watch()
        self._stopping = False

    def live(self) -> int:
        return len(self.active)

    def __enter__(self) -> PodWatch:
        listed = self.cluster.core.list_namespaced_pod(self.namespace)
        for pod in listed.items:
            self._record("LISTED", pod)
        self._thread = threading.Thread(
            target=self._run, args=(listed.metadata.resource_version,), daemon=True
        )
        self._thread.start()
        return self

    def _record(self, kind: str, pod) -> None:
        uid = pod.metadata.uid
        self.seen.add(uid)
        self.history.append((kind, pod.metadata.name, pod.status.phase or ""))
        if kind == "DELETED" or pod.status.phase in ("Succeeded", "Failed"):
            self.active.pop(uid, None)
        else:
            self.active[uid] = pod.metadata.name
        self.max_live = max(self.max_live, len(self.active))

    def _run(self, resource_version: str) -> None:
        try:
            for event in self._watch.stream(
                self.cluster.core.list_namespaced_pod,
                self.namespace,
                resource_version=resource_version,
                timeout_seconds=120,
            ):
                self._record(event["type"], event["object"])
        except BaseException as exc:
            if not self._stopping:  # closing the stream below may raise in here: not an error
                self.error = exc
        else:
            if not self._stopping:
                self.error = AssertionError("the pod watch ended before the test was done")

    def __exit__(self, *exc_info) -> None:
        self._stopping = True
        self._watch.stop()
        self._thread.join(timeout=30)
        if self.error is not None and exc_info[0] is None:
            raise AssertionError(f"pod watch failed: {self.error!r}") from self.error


def _apply(namespace: str, image: str = "zdtp/worker:1", **kw) -> dict:
    kw.setdefault("deferrable", False)
    op = IncrementalSyncOperator(
        task_id="inc", namespace=namespace, spec=SPEC, image=image, poll_interval=0.5, **kw
    )
    return op.execute(context(task_id="inc"))


def test_apply_idempotent_rollout_recreate_stop_resume_delete(
    cluster, namespace, airflow_k8s, db_conns
) -> None:
    creds = {"source_conn_id": "zt_src", "target_conn_id": "zt_tgt"}
    first = _apply(namespace, **creds)
    assert first["available_replicas"] == 1
    rs = lambda: cluster.apps.list_namespaced_replica_set(namespace).items  # noqa: E731
    assert len(rs()) == 1

    again = _apply(namespace, **creds)
    assert again["generation"] == first["generation"], "unchanged config must be a no-op"
    assert len(rs()) == 1

    # Image change: exactly one new ReplicaSet, and never two live pods at once (Recreate).
    with PodWatch(cluster, namespace) as pods:
        changed = _apply(namespace, image="zdtp/worker:2", **creds)
        wait_for(lambda: pods.live() == 1 and len(pods.seen) == 2, what="new pod live, old gone")
    assert changed["generation"] == first["generation"] + 1
    sets = rs()
    assert len(sets) == 2
    assert sorted(r.spec.replicas for r in sets) == [0, 1]
    # The watch saw the old pod (already there) and the new one: the check could have failed.
    assert len(pods.seen) == 2, pods.seen
    assert pods.max_live == 1, f"Recreate must never run two workers at once: {pods.history}"

    dep = cluster.apps.read_namespaced_deployment(NAME, namespace)
    assert dep.spec.strategy.type == "Recreate"
    (secret,) = cluster.core.list_namespaced_secret(
        namespace, label_selector="zdtp.io/part=credentials"
    ).items
    assert [(o.kind, o.name) for o in secret.metadata.owner_references] == [("Deployment", NAME)]
    assert db_conns["password"] not in str(cluster.api.sanitize_for_serialization(dep))

    StopIncrementalSyncOperator(
        task_id="stop", task="orders", namespace=namespace, poll_interval=0.5
    ).execute(context())
    assert cluster.apps.read_namespaced_deployment(NAME, namespace).spec.replicas == 0
    assert not cluster.core.list_namespaced_pod(namespace).items

    ResumeIncrementalSyncOperator(
        task_id="res", task="orders", namespace=namespace, poll_interval=0.5
    ).execute(context())
    assert cluster.apps.read_namespaced_deployment(NAME, namespace).status.available_replicas == 1

    DeleteIncrementalSyncOperator(task_id="del", name=NAME, namespace=namespace, poll_interval=0.5).execute(
        context()
    )
    assert not cluster.apps.list_namespaced_deployment(namespace).items
    wait_for(lambda: not rs(), what="ReplicaSets gone")
    assert not cluster.core.list_namespaced_secret(namespace, label_selector="zdtp.io/part").items
    assert not cluster.core.list_namespaced_pod(namespace).items


def test_crash_looping_worker_fails_the_rollout_with_its_reason(cluster, namespace, airflow_k8s) -> None:
    # Not after the 10-minute progress deadline: within a few restarts, with the worker's message.
    crash = {
        "sim.zdtp.io/crash-loop": "true",
        "sim.zdtp.io/delay": "1s",
        "sim.zdtp.io/message": "source: connection refused",
    }
    started = time.monotonic()
    with pytest.raises(AirflowException) as failed:
        _apply(namespace, annotations=crash)
    assert time.monotonic() - started < 120
    message = str(failed.value)
    assert "restarted" in message and "source: connection refused" in message, message
    # The Deployment stays (it keeps retrying; Stop/Delete are the user's call).
    assert cluster.apps.read_namespaced_deployment(NAME, namespace).spec.replicas == 1


def test_a_fixed_rollout_is_not_failed_by_the_old_pods_restarts(cluster, namespace, airflow_k8s) -> None:
    crash = {"sim.zdtp.io/crash-loop": "true", "sim.zdtp.io/delay": "1s"}
    _apply(namespace, wait=False, annotations=crash)
    wait_for(
        lambda: any(
            (s.restart_count or 0) >= 3
            for p in cluster.core.list_namespaced_pod(namespace).items
            for s in p.status.container_statuses or []
        ),
        timeout=60,
        what="the old pod restarted 3 times",
    )
    fixed = _apply(namespace)  # the same spec, the crash gone: a new pod that stays Ready
    assert fixed["available_replicas"] == 1


def test_crash_looping_worker_is_reported_unhealthy(cluster, namespace, airflow_k8s) -> None:
    _apply(namespace, wait=False, annotations={"sim.zdtp.io/crash-loop": "true", "sim.zdtp.io/delay": "1s"})
    sensor = IncrementalSyncSensor(task_id="s", task="orders", namespace=namespace, max_restarts=2)
    report = wait_for(
        lambda: (r := sensor.health()) and r["crash_looping"] and r, timeout=30, what="restarts counted"
    )
    assert report["healthy"] is False
    assert not sensor.poke(context()).is_done


def test_healthy_worker_satisfies_sensor(cluster, namespace, airflow_k8s) -> None:
    _apply(namespace)
    result = IncrementalSyncSensor(task_id="s", task="orders", namespace=namespace).poke(context())
    assert result.is_done and result.xcom_value["available_replicas"] == 1


def test_deferred_rollout_trigger_and_on_kill_scales_to_zero(cluster, namespace, airflow_k8s) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    with pytest.raises(TaskDeferred) as deferred:
        _apply(namespace, deferrable=True)
    trigger = deferred.value.trigger
    classpath, kwargs = trigger.serialize()
    assert classpath == "zdtp_provider.triggers.deployment.ZdtpRolloutTrigger"

    async def first_event():
        async for event in ZdtpRolloutTrigger(**kwargs).run():
            return event.payload

    event = asyncio.run(first_event())
    assert event["status"] == "success", event
    asyncio.run(ZdtpRolloutTrigger(**kwargs).on_kill())
    assert cluster.apps.read_namespaced_deployment(NAME, namespace).spec.replicas == 0


def test_sigterm_during_the_rollout_fails_the_task_and_scales_to_zero(
    cluster, namespace, airflow_k8s, dag_folder, db_conns
) -> None:
    """A killed stream task must end FAILED (not SUCCESS, cf. apache/airflow#73006) and leave no
    worker consuming the slot: its Deployment is scaled to zero (``on_kill_action`` default)."""
    body = (
        "from zdtp_provider.operators.incremental import IncrementalSyncOperator\n"
        "\n---\n"
        "IncrementalSyncOperator(task_id='stream', namespace=os.environ['ZT_NS'], image='zdtp/worker:1',"
        f" spec={SPEC!r}, source_conn_id='zt_src', target_conn_id='zt_tgt', deferrable=False,"
        " poll_interval=0.5, node_selector={'zdtp.io/nowhere': 'true'})\n"
    )
    path = write_dag(dag_folder, "zt_inc_term", body)
    proc = start_dag(path, "zt_inc_term", env={"ZT_NS": namespace})
    try:
        # The pod can never be scheduled, so the task is inside its rollout wait.
        wait_for(lambda: cluster.core.list_namespaced_pod(namespace).items, timeout=90, what="worker pod")
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        out = finish(proc, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out.state("stream") == "failed", out.output[-3000:]
    assert "killed" in out.output
    assert cluster.apps.read_namespaced_deployment(NAME, namespace).spec.replicas == 0
    wait_for(lambda: not cluster.core.list_namespaced_pod(namespace).items, what="worker pod gone")
    assert db_conns["password"] not in out.output
