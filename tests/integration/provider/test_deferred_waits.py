"""Stop, resume, delete and the health sensor defer their waits: each trigger, rebuilt from its
serialized form as the triggerer would, reaches the state the operator asked for on the cluster."""

from __future__ import annotations

import asyncio

import pytest
from airflow.sdk.exceptions import TaskDeferred

from tests.integration.provider._context import context
from zdtp_provider.operators.incremental import (
    DeleteIncrementalSyncOperator,
    IncrementalSyncOperator,
    ResumeIncrementalSyncOperator,
    StopIncrementalSyncOperator,
)
from zdtp_provider.sensors.incremental import IncrementalSyncSensor
from zdtp_provider.triggers.deployment import ZdtpDeploymentStateTrigger

pytestmark = [pytest.mark.cluster, pytest.mark.airflow]

SPEC = {"task": "orders", "tables": [{"source": "public.orders"}]}


def _resume_in_triggerer(op, ctx) -> object:
    """execute() → TaskDeferred → a fresh trigger from serialize() → first event → execute_complete."""
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    classpath, kwargs = deferred.value.trigger.serialize()
    module, _, name = classpath.rpartition(".")
    trigger_cls = getattr(__import__(module, fromlist=[name]), name)

    async def first_event():
        async for event in trigger_cls(**kwargs).run():
            return event.payload

    event = asyncio.run(first_event())
    assert event["status"] == "success", event
    return getattr(op, deferred.value.method_name)(ctx, event)


def test_stop_resume_sensor_delete_defer_and_complete(cluster, namespace, airflow_k8s) -> None:
    IncrementalSyncOperator(
        task_id="inc",
        namespace=namespace,
        spec=SPEC,
        image="zdtp/worker:1",
        deferrable=False,
        poll_interval=0.5,
    ).execute(context(task_id="inc"))
    target = {"task": "orders", "namespace": namespace, "poll_interval": 0.5, "deferrable": True}
    stream_pods = "app.kubernetes.io/component=incremental-sync"

    _resume_in_triggerer(StopIncrementalSyncOperator(task_id="stop", **target), context())
    assert not cluster.core.list_namespaced_pod(namespace, label_selector=stream_pods).items
    assert cluster.apps.read_namespaced_deployment("zdtp-orders-w0-cdc", namespace).spec.replicas == 0

    _resume_in_triggerer(ResumeIncrementalSyncOperator(task_id="resume", **target), context())
    dep = cluster.apps.read_namespaced_deployment("zdtp-orders-w0-cdc", namespace)
    assert dep.status.available_replicas == 1

    sensor = IncrementalSyncSensor(task_id="health", **target)
    report = sensor.health()
    assert report["healthy"], report  # healthy at once: the sensor returns without deferring
    assert sensor.execute(context())["healthy"]

    _resume_in_triggerer(DeleteIncrementalSyncOperator(task_id="delete", **target), context())
    assert not cluster.apps.list_namespaced_deployment(namespace).items
    assert not cluster.core.list_namespaced_pod(namespace, label_selector=stream_pods).items
    assert not cluster.core.list_namespaced_secret(namespace, label_selector="zdtp.io/part").items


def test_deferred_sensor_waits_for_a_stream_to_become_healthy(cluster, namespace, airflow_k8s) -> None:
    """A stopped stream is unhealthy: the sensor defers; scaled back up, the trigger reports healthy."""
    IncrementalSyncOperator(
        task_id="inc",
        namespace=namespace,
        spec=SPEC,
        image="zdtp/worker:1",
        deferrable=False,
        poll_interval=0.5,
    ).execute(context(task_id="inc"))
    target = {"task": "orders", "namespace": namespace, "poll_interval": 0.5}
    StopIncrementalSyncOperator(task_id="stop", deferrable=False, **target).execute(context())
    sensor = IncrementalSyncSensor(task_id="health", deferrable=True, **target)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context())
    classpath, kwargs = deferred.value.trigger.serialize()
    assert classpath == "zdtp_provider.triggers.deployment.ZdtpDeploymentStateTrigger"
    assert kwargs["state"] == "healthy"

    async def scale_up_then_first_event():
        await asyncio.to_thread(sensor.hook.scale, "zdtp-orders-w0-cdc", namespace, 1)
        async for event in ZdtpDeploymentStateTrigger(**kwargs).run():
            return event.payload

    event = asyncio.run(scale_up_then_first_event())
    report = sensor.execute_complete(context(), event)
    assert report["healthy"] and report["available_replicas"] == 1
