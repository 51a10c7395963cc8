"""Job operators on the real dev cluster: Indexed Job exit-code policy, kill, retry reuse, queues."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from tests.integration.provider._airflow import finish, start_dag, write_dag
from tests.integration.provider._context import context
from tests.integration.provider.conftest import wait_for
from zdtp_provider.operators.job import (
    FullSyncJobOperator,
    IndexedFullSyncJobOperator,
    QueueFullSyncJobOperator,
)
from zdtp_provider.triggers.job import ZdtpJobTrigger

pytestmark = [pytest.mark.cluster, pytest.mark.airflow]

RESULT = json.dumps({"status": "ok", "mode": "full", "run_id": "r", "worker": "w", "rows": 7})
SPEC = {"task": "orders", "tables": [{"source": "public.orders"}]}


def _specs(n: int) -> list[dict]:
    return [{**SPEC, "worker": f"w{i}"} for i in range(n)]


def test_indexed_job_retries_75_fails_78_index_and_reports(cluster, namespace, airflow_k8s) -> None:
    op = IndexedFullSyncJobOperator(
        task_id="idx",
        namespace=namespace,
        image="zdtp/worker:dev",
        specs=_specs(20),
        parallelism=20,
        retries_per_index=1,
        deferrable=False,
        poll_interval=1,
        annotations={
            "sim.zdtp.io/delay": "1s",
            "sim.zdtp.io/message": RESULT,
            "sim.zdtp.io/exit-code-index-3": "75",
            "sim.zdtp.io/exit-code-index-7": "75",
            "sim.zdtp.io/exit-code-index-11": "78",
            "sim.zdtp.io/message-index-11": "bad config for chunk 11",
        },
    )
    ctx = context()
    with pytest.raises(AirflowFailException, match="index 11: exit \\[78\\] bad config for chunk 11"):
        op.execute(ctx)
    report = ctx["ti"].xcom["report"]
    assert report["failed"] == [11]
    assert report["succeeded"] == [i for i in range(20) if i != 11]
    assert report["indexes"]["3"]["exit_codes"] == [75, 0]
    assert report["indexes"]["7"]["exit_codes"] == [75, 0]
    assert report["indexes"]["11"]["exit_codes"] == [78], "78 must not be retried"
    assert report["indexes"]["0"]["result"]["rows"] == 7
    (job,) = cluster.batch.list_namespaced_job(namespace).items
    assert job.status.failed_indexes == "11"
    # The failed Job is kept to debug; its pod template passed restricted admission.
    assert job.spec.pod_failure_policy.rules[1].action == "FailIndex"


def test_retry_reuses_the_job_instead_of_duplicating(cluster, namespace, airflow_k8s) -> None:
    """apache/airflow#70585: a second try of the same task instance must adopt the first Job."""

    def attempt(try_number: int) -> str:
        op = FullSyncJobOperator(
            task_id="job",
            namespace=namespace,
            image="zdtp/worker:dev",
            spec=SPEC,
            deferrable=True,
            annotations={"sim.zdtp.io/delay": "30s"},
        )
        with pytest.raises(TaskDeferred) as deferred:
            op.execute(context(try_number=try_number, task_id="job"))
        return deferred.value.trigger.name

    first, second = attempt(1), attempt(2)
    assert first == second
    jobs = cluster.batch.list_namespaced_job(namespace).items
    assert len(jobs) == 1, [j.metadata.name for j in jobs]


def test_deferred_kill_deletes_job_and_pods(cluster, namespace, airflow_k8s) -> None:
    op = FullSyncJobOperator(
        task_id="job",
        namespace=namespace,
        image="zdtp/worker:dev",
        spec=SPEC,
        deferrable=True,
        annotations={"sim.zdtp.io/delay": "60s"},
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context(task_id="job"))
    trigger = deferred.value.trigger
    assert isinstance(trigger, ZdtpJobTrigger)
    wait_for(lambda: cluster.core.list_namespaced_pod(namespace).items, what="Job pod")
    # A fresh trigger, as the triggerer would rebuild it from serialize().
    classpath, kwargs = trigger.serialize()
    assert classpath == "zdtp_provider.triggers.job.ZdtpJobTrigger"
    asyncio.run(ZdtpJobTrigger(**kwargs).on_kill())
    wait_for(lambda: not cluster.batch.list_namespaced_job(namespace).items, what="Job deleted")
    wait_for(lambda: not cluster.core.list_namespaced_pod(namespace).items, what="pods deleted")


def test_sigterm_in_sync_mode_deletes_job(cluster, namespace, airflow_k8s, dag_folder) -> None:
    path = write_dag(
        dag_folder,
        "zt_job_term",
        "from zdtp_provider.operators.job import IndexedFullSyncJobOperator\n---\n"
        "IndexedFullSyncJobOperator(task_id='idx', namespace=os.environ['ZT_NS'], image='zdtp/worker:dev',"
        " specs=[{'task': 'orders', 'worker': f'w{i}', 'tables': [{'source': 'a'}]} for i in range(3)],"
        " deferrable=False, poll_interval=1, annotations={'sim.zdtp.io/delay': '120s'})\n",
    )
    proc = start_dag(path, "zt_job_term", env={"ZT_NS": namespace})
    try:
        wait_for(
            lambda: [
                p for p in cluster.core.list_namespaced_pod(namespace).items if p.status.phase == "Running"
            ],
            timeout=120,
            what="Job pods running",
        )
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        out = finish(proc, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out.state("idx") == "failed", out.output[-3000:]
    wait_for(lambda: not cluster.batch.list_namespaced_job(namespace).items, what="Job deleted")
    wait_for(lambda: not cluster.core.list_namespaced_pod(namespace).items, what="pods deleted")


def test_queue_one_pod_per_item(cluster, namespace, airflow_k8s) -> None:
    op = QueueFullSyncJobOperator(
        task_id="q",
        namespace=namespace,
        image="zdtp/worker:dev",
        spec=SPEC,
        work_queue="orders-chunks",
        items=4,
        parallelism=2,
        deferrable=False,
        poll_interval=1,
        delete_on_success=False,
        annotations={"sim.zdtp.io/delay": "1s", "sim.zdtp.io/message": RESULT},
    )
    report = op.execute(context(task_id="q"))
    assert report["phase"] == "succeeded" and report["succeeded"] == 4
    assert len(report["pods"]) == 4 and all(p["result"]["rows"] == 7 for p in report["pods"])
    (job,) = cluster.batch.list_namespaced_job(namespace).items
    args = job.spec.template.spec.containers[0].args
    assert args == ["full", "--queue", "orders-chunks", "--queue-mode", "one"]


def test_queue_drained_by_variable_pods(cluster, namespace, airflow_k8s) -> None:
    op = QueueFullSyncJobOperator(
        task_id="q",
        namespace=namespace,
        image="zdtp/worker:dev",
        spec=SPEC,
        work_queue="orders-chunks",
        parallelism=3,
        deferrable=False,
        poll_interval=1,
        delete_on_success=True,
        annotations={"sim.zdtp.io/delay": "1s"},
    )
    report = op.execute(context(task_id="q"))
    # No completions: the Job is complete once a pod succeeded and all stopped.
    assert report["phase"] == "succeeded" and report["succeeded"] >= 1
    assert all(p["exit_code"] == 0 for p in report["pods"])
    wait_for(lambda: not cluster.batch.list_namespaced_job(namespace).items, what="succeeded Job deleted")
