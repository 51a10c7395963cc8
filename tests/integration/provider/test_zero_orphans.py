"""Zero orphans: kill the Airflow task at every point of its life, for every workload kind, and
nothing of it may stay in the namespace.

Kinds: a Pod (FullSyncOperator), a Job, an Indexed Job, a queue Job, a Deployment (the stream).
Points: ``before_create`` (nothing written yet), ``after_secret`` (credentials exist, workload not),
``after_workload`` (just created), ``running`` (a worker pod runs) — each a real SIGTERM to a
``dag.test()`` subprocess held at that point (see ``_kill_points``) — and ``deferred``: the task
deferred and its trigger killed the way the triggerer does on a user kill (cancel, ``on_kill()``,
``cleanup()``).

Afterwards every Pod, Job, Deployment, ReplicaSet, Secret and ConfigMap in the (fresh) namespace
is listed, labelled or not. Allowed to stay are only documented kept objects, each bounded:
a finished Job with ``ttlSecondsAfterFinished``; a stream Deployment scaled to zero (the
documented ``on_kill_action="scale_to_zero"`` default, kept so ``ResumeIncrementalSyncOperator``
can restart it) with no pod; and whatever has an ownerReference to one of those. No worker pod
may be running.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.integration.provider._airflow import finish, start_dag, write_dag
from tests.integration.provider._context import context
from tests.integration.provider.conftest import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.airflow, pytest.mark.slow]

KINDS = ["pod", "job", "indexed-job", "queue-job", "deployment"]
HELD = ["before_create", "after_secret", "after_workload"]
SPEC = {"task": "orders", "tables": [{"source": "public.orders"}]}
# KWOK: worker containers "run" this long, so the task is still waiting when it is killed.
RUNNING = {"sim.zdtp.io/delay": "300s"}
# A stream pod that runs but has not been Ready for min_ready_seconds (below) keeps the rollout
# (and so the task) going until the kill.


def _operator_source(kind: str, *, deferrable: bool) -> str:
    """The operator call for ``kind`` as DAG-file source (also eval'd in-process)."""
    common = (
        "task_id='work', namespace=os.environ['ZT_NS'], image='zdtp/worker:dev', source_conn_id='zt_src',"
        f" target_conn_id='zt_tgt', poll_interval=1, deferrable={deferrable!r}"
    )
    spec = repr(SPEC)
    if kind == "pod":
        return (
            f"FullSyncOperator({common}, spec={spec}, get_logs=False, startup_check_interval_seconds=1,"
            f" annotations={RUNNING!r})"
        )
    if kind == "job":
        return f"FullSyncJobOperator({common}, spec={spec}, annotations={RUNNING!r})"
    if kind == "indexed-job":
        w1 = {**SPEC, "worker": "w1"}
        return f"IndexedFullSyncJobOperator({common}, specs=[{spec}, {w1!r}], annotations={RUNNING!r})"
    if kind == "queue-job":
        return (
            f"QueueFullSyncJobOperator({common}, spec={spec}, work_queue='q', parallelism=2,"
            f" annotations={RUNNING!r})"
        )
    stream = {**SPEC, "mode": "incremental"}
    return (
        f"IncrementalSyncOperator({common}, spec={stream!r}, annotations={RUNNING!r}, min_ready_seconds=300)"
    )


IMPORTS = (
    "from tests.integration.provider._kill_points import install\n"
    "install()\n"
    "from zdtp_provider.operators.full import FullSyncOperator\n"
    "from zdtp_provider.operators.incremental import IncrementalSyncOperator\n"
    "from zdtp_provider.operators.job import (\n"
    "    FullSyncJobOperator, IndexedFullSyncJobOperator, QueueFullSyncJobOperator)\n"
)


# ------------------------------------------------------------------------ what is left


def _conditions(job: Any) -> set[str]:
    return {c.type for c in (job.status.conditions or []) if c.status == "True"}


def leftovers(cluster, namespace: str) -> list[str]:
    """Every object left that is neither documented-kept nor owned by a kept object."""
    core, apps, batch = cluster.core, cluster.apps, cluster.batch
    pods = core.list_namespaced_pod(namespace).items
    objects: list[tuple[str, Any]] = [("Pod", o) for o in pods]
    objects += [("Job", o) for o in batch.list_namespaced_job(namespace).items]
    objects += [("Deployment", o) for o in apps.list_namespaced_deployment(namespace).items]
    objects += [("ReplicaSet", o) for o in apps.list_namespaced_replica_set(namespace).items]
    objects += [("Secret", o) for o in core.list_namespaced_secret(namespace).items]
    objects += [
        ("ConfigMap", o)
        for o in core.list_namespaced_config_map(namespace).items
        if o.metadata.name != "kube-root-ca.crt"  # every namespace's own, made by the cluster
    ]
    kept: set[str] = set()
    for kind, obj in objects:
        if (
            kind == "Job"
            and obj.spec.ttl_seconds_after_finished is not None
            and (_conditions(obj) & {"Complete", "Failed"})
        ):
            kept.add(obj.metadata.uid)
        if kind == "Deployment" and obj.spec.replicas == 0:
            kept.add(obj.metadata.uid)
    changed = True
    while changed:  # ownership chains: Deployment -> ReplicaSet, Job -> Secret, ...
        changed = False
        for _, obj in objects:
            owners = {o.uid for o in obj.metadata.owner_references or []}
            if obj.metadata.uid not in kept and owners & kept:
                kept.add(obj.metadata.uid)
                changed = True
    left = [f"{kind}/{o.metadata.name}" for kind, o in objects if o.metadata.uid not in kept]
    left += [f"running Pod/{p.metadata.name}" for p in pods if p.status.phase in ("Pending", "Running")]
    return sorted(set(left))


def assert_no_orphans(cluster, namespace: str, what: str, task_output: str = "") -> None:
    # Foreground deletion and the garbage collector take a few seconds.
    try:
        wait_for(lambda: not leftovers(cluster, namespace), timeout=90, what="no orphans")
    except AssertionError:
        raise AssertionError(
            f"{what}: orphans left: {leftovers(cluster, namespace)}\n{task_output[-4000:]}"
        ) from None


# ------------------------------------------------------------------------ the kills


def _running_pod(cluster, namespace: str) -> list[Any]:
    return [p for p in cluster.core.list_namespaced_pod(namespace).items if p.status.phase == "Running"]


@pytest.mark.parametrize("point", [*HELD, "running"])
@pytest.mark.parametrize("kind", KINDS)
def test_sigterm_leaves_no_orphans(
    cluster, namespace, airflow_k8s, dag_folder: Path, db_conns, tmp_path: Path, kind: str, point: str
) -> None:
    dag_id = f"zt_orphans_{kind.replace('-', '_')}_{point}"
    body = IMPORTS + "\n---\n" + _operator_source(kind, deferrable=False) + "\n"
    path = write_dag(dag_folder, dag_id, body)
    mark = tmp_path / "held"
    proc = start_dag(path, dag_id, env={"ZT_NS": namespace, "ZT_KILL_POINT": point, "ZT_MARK": str(mark)})
    try:
        if point == "running":
            wait_for(lambda: _running_pod(cluster, namespace), timeout=300, what="a running worker pod")
            time.sleep(3)  # into the operator's completion wait
        else:
            # dag.test's start-up alone was seen to take ~2 minutes on a busy 2-core machine.
            wait_for(lambda: mark.exists() or proc.poll() is not None, timeout=300, what=f"task at {point}")
            assert mark.exists(), f"the task ended before reaching {point}: {proc.communicate()[0][-3000:]}"
        proc.send_signal(signal.SIGTERM)
        try:
            out = finish(proc, timeout=180)
        except subprocess.TimeoutExpired:
            out = None  # what the supervisor does next: SIGKILL (below); orphans are checked still
    finally:
        if proc.poll() is None:
            proc.kill()
    output = out.output if out is not None else "(the task did not end within 180 s of SIGTERM)"
    assert_no_orphans(cluster, namespace, f"{kind} killed at {point}", output)
    assert out is not None, f"the task did not end within 180 s of SIGTERM ({kind}, {point})"
    assert out.state("work") == "failed", out.output[-3000:]
    assert db_conns["password"] not in out.output


def _operator(kind: str, namespace: str):
    import os

    from zdtp_provider.operators.full import FullSyncOperator
    from zdtp_provider.operators.incremental import IncrementalSyncOperator
    from zdtp_provider.operators.job import (
        FullSyncJobOperator,
        IndexedFullSyncJobOperator,
        QueueFullSyncJobOperator,
    )

    names = {
        "os": os,
        "FullSyncOperator": FullSyncOperator,
        "IncrementalSyncOperator": IncrementalSyncOperator,
        "FullSyncJobOperator": FullSyncJobOperator,
        "IndexedFullSyncJobOperator": IndexedFullSyncJobOperator,
        "QueueFullSyncJobOperator": QueueFullSyncJobOperator,
    }
    os.environ["ZT_NS"] = namespace
    return eval(_operator_source(kind, deferrable=True), names)


@pytest.mark.parametrize("kind", KINDS)
def test_killing_a_deferred_task_leaves_no_orphans(
    cluster, namespace, airflow_k8s, db_conns, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    monkeypatch.setenv("ZT_NS", namespace)
    op = _operator(kind, namespace)
    ctx = context(task_id="work")
    # KubernetesPodOperator (the pod kind) also reads these to label its pod.
    ctx.update(dag=SimpleNamespace(dag_id=ctx["ti"].dag_id), task_instance=ctx["ti"])
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    trigger = deferred.value.trigger

    async def run_then_kill() -> None:
        async def drain() -> None:
            async for _ in trigger.run():
                pass

        running = asyncio.create_task(drain())
        deadline = time.monotonic() + 120
        while not await asyncio.to_thread(_running_pod, cluster, namespace):
            assert not running.done(), f"the trigger ended before a worker ran: {running}"
            assert time.monotonic() < deadline, "no worker pod ran while deferred"
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)
        # What the triggerer does when a user kills the deferred task.
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await asyncio.wait_for(trigger.on_kill(), timeout=30)
        with contextlib.suppress(Exception):
            await trigger.cleanup()

    asyncio.run(run_then_kill())
    assert_no_orphans(cluster, namespace, f"{kind} killed while deferred")
