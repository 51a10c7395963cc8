"""A workload that finished before its task deferred is concluded in-process, never deferred.

Why: a deferral whose trigger fires at once lets Airflow 3's scheduler fail the requeued task on
the deferring process's stale executor event (apache/airflow#66374 family; bench/fanout.py lost
109 of 230 succeeded mapped tasks to it). The deterministic part — "the workload is already
finished when the task would defer" — is forced here, not hoped for: a KubernetesPodOperator
callback (KPO's own extension point, run after the pod is created and before the deferral) waits
until the KWOK pod has ended; Job and Deployment cases reuse an object that is already complete.

Under real Airflow (``dag.test``), a deferral shows as dag.test running the trigger inline
("[DAG TEST] running trigger in line"); its absence proves the task never deferred.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from tests.integration.provider._airflow import run_dag, write_dag
from tests.integration.provider._context import context
from tests.integration.provider.conftest import wait_for
from zdtp_provider.k8s.status import job_phase
from zdtp_provider.operators.incremental import IncrementalSyncOperator, StopIncrementalSyncOperator
from zdtp_provider.operators.job import FullSyncJobOperator, IndexedFullSyncJobOperator
from zdtp_provider.triggers.deployment import ZdtpRolloutTrigger
from zdtp_provider.triggers.job import ZdtpJobTrigger

pytestmark = [pytest.mark.cluster, pytest.mark.airflow]

RESULT = {"status": "ok", "exit_code": 0, "mode": "full", "run_id": "r", "worker": "w0", "rows": 42}
SPEC = {"task": "orders", "tables": [{"source": "public.orders"}]}
INLINE_TRIGGER = "[DAG TEST] running trigger in line"
NOT_DEFERRED = "before the task deferred: finishing in-process instead of deferring"

# A KPO callback that returns only once the pod has ended: the pod is then certainly finished
# when the operator reaches its deferral (the situation the fan-out bench hit by load).
DAG_HEADER = """
import time
from airflow.providers.cncf.kubernetes.callbacks import KubernetesPodOperatorCallback
from zdtp_provider.operators.full import FullSyncOperator


class WaitUntilPodEnded(KubernetesPodOperatorCallback):
    @staticmethod
    def on_pod_creation(*, pod, client, mode, **kwargs):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            phase = client.read_namespaced_pod(pod.metadata.name, pod.metadata.namespace).status.phase
            if phase in ("Succeeded", "Failed"):
                print(f"ZT pod {pod.metadata.name} ended before deferral: {phase}", flush=True)
                return
            time.sleep(0.2)
        raise RuntimeError("pod did not end within 60 s")
"""


def _dag(folder: Path, dag_id: str, *, wait_for_end: bool, **op_kwargs) -> Path:
    # get_logs=False: KWOK's simulated log never ends a follow (a kubelet does for an ended
    # container), so KPO's log read would time out three times, deferred or not.
    args = ", ".join(f"{k}={v!r}" for k, v in op_kwargs.items())
    callbacks = "callbacks=[WaitUntilPodEnded], " if wait_for_end else ""
    body = (
        DAG_HEADER
        + "\n---\n"
        + "FullSyncOperator(task_id='full', namespace=os.environ['ZT_NS'], image='zdtp/worker:dev', "
        + f"spec={SPEC!r}, deferrable=True, poll_interval=1, get_logs=False, source_conn_id='zt_src', "
        + f"target_conn_id='zt_tgt', {callbacks}{args})\n"
    )
    return write_dag(folder, dag_id, body)


def _no_credentials_left(cluster, namespace: str) -> bool:
    return not cluster.core.list_namespaced_secret(namespace, label_selector="zdtp.io/part").items


# ------------------------------------------------------------------ FullSyncOperator (KPO)


def test_pod_succeeded_before_deferral_finishes_without_deferring(
    cluster, namespace, airflow_k8s, dag_folder, db_conns
) -> None:
    path = _dag(
        dag_folder,
        "zt_race_done",
        wait_for_end=True,
        annotations={"sim.zdtp.io/delay": "0s", "sim.zdtp.io/message": json.dumps(RESULT)},
    )
    out = run_dag(path, "zt_race_done", env={"ZT_NS": namespace})
    assert "ended before deferral: Succeeded" in out.output, out.output[-3000:]
    assert out.state("full") == "success", out.output[-3000:]
    assert INLINE_TRIGGER not in out.output, "the task deferred although its pod had finished"
    assert NOT_DEFERRED in out.output
    assert out.xcom("full") == RESULT
    assert out.tasks["full"]["xcom"].get("pod_name"), "KPO's pod_name XCom is still pushed"
    # Same clean-up as after the trigger: the succeeded pod is deleted, its Secret follows it.
    wait_for(lambda: not cluster.core.list_namespaced_pod(namespace).items, what="pod deleted")
    wait_for(lambda: _no_credentials_left(cluster, namespace), what="credentials Secret collected")


def test_pod_still_running_at_deferral_defers_as_before(
    cluster, namespace, airflow_k8s, dag_folder, db_conns
) -> None:
    path = _dag(
        dag_folder,
        "zt_race_running",
        wait_for_end=False,
        annotations={"sim.zdtp.io/delay": "8s", "sim.zdtp.io/message": json.dumps(RESULT)},
    )
    out = run_dag(path, "zt_race_running", env={"ZT_NS": namespace})
    assert out.state("full") == "success", out.output[-3000:]
    assert INLINE_TRIGGER in out.output, "a running pod must be waited for in the triggerer"
    assert NOT_DEFERRED not in out.output
    assert out.xcom("full") == RESULT
    wait_for(lambda: not cluster.core.list_namespaced_pod(namespace).items, what="pod deleted")


def test_pod_failed_before_deferral_fails_with_the_worker_reason(
    cluster, namespace, airflow_k8s, dag_folder, db_conns
) -> None:
    path = _dag(
        dag_folder,
        "zt_race_failed",
        wait_for_end=True,
        annotations={
            "sim.zdtp.io/delay": "0s",
            "sim.zdtp.io/exit-code": "78",
            "sim.zdtp.io/message": "spec: bad table name",
        },
    )
    out = run_dag(path, "zt_race_failed", env={"ZT_NS": namespace})
    assert "ended before deferral: Failed" in out.output, out.output[-3000:]
    assert out.state("full") == "failed"
    assert INLINE_TRIGGER not in out.output
    assert "spec: bad table name" in out.output and "exit code 78" in out.output
    assert "not retryable" in out.output, "exit 78 raises AirflowFailException, as after a trigger"
    pods = cluster.core.list_namespaced_pod(namespace).items
    assert [p.status.phase for p in pods] == ["Failed"], "failed pod kept for debugging"


# ------------------------------------------------------------------ Job operators


def _job_op(namespace: str, cls=FullSyncJobOperator, **kwargs):
    base = {
        "task_id": "copy",
        "namespace": namespace,
        "image": "zdtp/worker:dev",
        "poll_interval": 0.5,
        "annotations": {"sim.zdtp.io/delay": "0s", "sim.zdtp.io/message": json.dumps(RESULT)},
    }
    if cls is IndexedFullSyncJobOperator:
        base.update(specs=[{**SPEC, "worker": f"w{i}"} for i in range(3)], parallelism=3)
    else:
        base.update(spec=SPEC)
    return cls(**{**base, **kwargs})


@pytest.mark.parametrize("cls", [FullSyncJobOperator, IndexedFullSyncJobOperator], ids=["job", "indexed"])
def test_job_already_complete_concludes_without_deferring(cluster, namespace, airflow_k8s, cls) -> None:
    """A retry (same task instance and run) finds the first try's completed Job: the deferrable
    task reports it at once, as the trigger's resume would, and deletes it (no second Job)."""
    first = _job_op(namespace, cls, deferrable=False, delete_on_success=False).execute(context())
    assert first["phase"] == "succeeded"
    (job,) = cluster.batch.list_namespaced_job(namespace).items

    report = _job_op(namespace, cls, deferrable=True).execute(context(try_number=2))  # no TaskDeferred

    assert report == first, "the same report the trigger's resume would give"
    assert report["job"] == job.metadata.name
    if cls is IndexedFullSyncJobOperator:
        assert [report["indexes"][str(i)]["result"] for i in range(3)] == [RESULT] * 3
    else:
        assert [p["result"] for p in report["pods"]] == [RESULT]
    wait_for(lambda: not cluster.batch.list_namespaced_job(namespace).items, what="Job deleted on success")


class _JobEndsBeforeDeferral(FullSyncJobOperator):
    """Forces the race's precondition: returns from find-or-create only once the Job has ended."""

    def _find_or_create(self, rendered, context):
        job = super()._find_or_create(rendered, context)
        wait_for(
            lambda: job_phase(self.hook.read_job(rendered.name, rendered.namespace)) != "running",
            what="Job ended",
        )
        return job


def test_job_still_running_defers_to_the_job_trigger(cluster, namespace, airflow_k8s) -> None:
    op = _job_op(
        namespace,
        deferrable=True,
        annotations={"sim.zdtp.io/delay": "60s", "sim.zdtp.io/message": json.dumps(RESULT)},
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context())
    assert isinstance(deferred.value.trigger, ZdtpJobTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert len(cluster.batch.list_namespaced_job(namespace).items) == 1


def test_job_failed_before_deferral_fails_with_the_worker_reason(cluster, namespace, airflow_k8s) -> None:
    annotations = {
        "sim.zdtp.io/delay": "0s",
        "sim.zdtp.io/exit-code": "78",
        "sim.zdtp.io/message": "bad spec",
    }
    op = _job_op(namespace, _JobEndsBeforeDeferral, deferrable=True, job_retries=0, annotations=annotations)
    ctx = context()
    with pytest.raises(AirflowFailException, match="bad spec") as failed:
        op.execute(ctx)  # a TaskDeferred here would be the old behaviour
    assert "not retryable" in str(failed.value)
    assert ctx["ti"].xcom["report"]["phase"] == "failed"
    (job,) = cluster.batch.list_namespaced_job(namespace).items
    assert job_phase(job) == "failed", "a failed Job is kept for debugging"


# ------------------------------------------------------------------ Deployments


def test_unchanged_stream_reapply_and_stop_of_a_stopped_stream_do_not_defer(
    cluster, namespace, airflow_k8s
) -> None:
    inc = {"task_id": "inc", "namespace": namespace, "spec": SPEC, "image": "zdtp/worker:1"}
    inc["poll_interval"] = 0.5
    first = IncrementalSyncOperator(**inc, deferrable=False).execute(context(task_id="inc"))
    assert first["available_replicas"] == 1

    # Unchanged config: the apply changes nothing, the rollout is done — no deferral.
    again = IncrementalSyncOperator(**inc, deferrable=True).execute(context(task_id="inc"))
    assert again == first

    # A changed spec rolls out a new ReplicaSet: that wait defers.
    changed = IncrementalSyncOperator(**{**inc, "image": "zdtp/worker:2"}, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        changed.execute(context(task_id="inc"))
    assert isinstance(deferred.value.trigger, ZdtpRolloutTrigger)

    target = {"task": "orders", "namespace": namespace, "poll_interval": 0.5}
    StopIncrementalSyncOperator(task_id="stop", deferrable=False, **target).execute(context())
    # Stopping a stopped stream: nothing to wait for, no deferral.
    StopIncrementalSyncOperator(task_id="stop", deferrable=True, **target).execute(context())
    assert cluster.apps.read_namespaced_deployment("zdtp-orders-w0-cdc", namespace).spec.replicas == 0
