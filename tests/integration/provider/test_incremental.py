"""Incremental operators and sensor on the real dev cluster."""

from __future__ import annotations

import asyncio
import threading

import pytest

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
    seen_max, stop = [0], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            live = [
                p
                for p in cluster.core.list_namespaced_pod(namespace).items
                if not p.metadata.deletion_timestamp
            ]
            seen_max[0] = max(seen_max[0], len(live))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        changed = _apply(namespace, image="zdtp/worker:2", **creds)
    finally:
        stop.set()
        watcher.join()
    assert changed["generation"] == first["generation"] + 1
    sets = rs()
    assert len(sets) == 2
    assert sorted(r.spec.replicas for r in sets) == [0, 1]
    assert seen_max[0] <= 1, "Recreate must never run two workers at once"

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


def test_crash_looping_worker_is_reported_unhealthy(cluster, namespace, airflow_k8s) -> None:
    _apply(namespace, annotations={"sim.zdtp.io/crash-loop": "true", "sim.zdtp.io/delay": "1s"})
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
