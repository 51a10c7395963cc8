"""A second run of a full+incremental DAG whose stream runs is refused before it writes anything;
the documented resync (``zdtp teardown FILE``, then trigger again) brings the target back to the
source.

Real ``airflow dags test`` runs of a generated DAG, the KWOK dev cluster and real PostgreSQL.
A scheduled run in the same situation is skipped with the same message (the scheduler's run is
made in the metadata DB, its first task run by ``airflow tasks test``).

KWOK pods run no code, so what the pods would do is done here with the real worker code and the
exact specs the run handed them: the copy pods' specs (the ``plan`` XCom) through
``python -m zdtp_worker full``, the stream's spec (``prepare_stream``'s ``spec`` XCom) by the
incremental worker in a thread. The refused run must leave every Kubernetes object (name and
resourceVersion), the target's rows and its ``zdtp.cdc_state`` exactly as they were.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import SyncEnv, metadata_rows
from tests.e2e.dags.test_dag_modes import config, seed
from tests.fixtures.cluster import Cluster
from tests.fixtures.digest import assert_same, wait_same
from tests.integration.worker_cdc.helpers import InProcessWorker
from tests.integration.worker_full.helpers import worker_env
from zdtp_worker.contract.spec import WorkerSpec

pytestmark = [pytest.mark.cluster, pytest.mark.airflow, pytest.mark.postgres]

TASK = "zt-rerun"
ALL_TASKS = {"prepare_stream", "plan", "copy[0]", "copy[1]", "verify", "stream"}
SCHEDULED = "scheduled__2026-12-02T00:00:00+00:00"

# What the scheduler does on a tick (``airflow dags test`` only makes manual runs): a run of type
# "scheduled" in the metadata DB; its first task is then run by ``airflow tasks test``.
MAKE_SCHEDULED_RUN = """
import sys
from airflow.models.serialized_dag import SerializedDagModel
from airflow.sdk import timezone
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState
from airflow.utils.types import DagRunTriggeredByType, DagRunType

with create_session() as session:
    now = timezone.utcnow()
    SerializedDagModel.get_dag(sys.argv[1], session=session).create_dagrun(
        run_id=sys.argv[2], logical_date=now, data_interval=(now, now), run_after=now,
        run_type=DagRunType.SCHEDULED, triggered_by=DagRunTriggeredByType.TIMETABLE,
        state=DagRunState.RUNNING, session=session,
    )
"""


def _xcom(env: SyncEnv, dag_id: str, task_id: str, key: str = "return_value") -> Any:
    rows = metadata_rows(
        env.home,
        "SELECT x.value FROM xcom x JOIN dag_run r ON r.id = x.dag_run_id"
        " WHERE x.dag_id = ? AND x.task_id = ? AND x.key = ? ORDER BY r.id DESC LIMIT 1",
        (dag_id, task_id, key),
    )
    value = json.loads(rows[0][0]) if rows else None
    return json.loads(value) if isinstance(value, str) else value


def _run_copy_pods(env: SyncEnv, dag_id: str, source_dsn: str, target_dsn: str) -> None:
    """What the run's copy pods would have done on a real node: each planned spec, real worker."""
    specs = _xcom(env, dag_id, "plan")
    assert specs, "the run planned no worker"
    # All at once, as the pods would run (each worker's interpreter start-up overlaps the others').
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "zdtp_worker", "full"],
            env=worker_env(spec, source_dsn, target_dsn),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for spec in specs
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=300)
        assert worker.returncode == 0, stderr[-3000:]


def _objects(cluster: Cluster, namespace: str) -> dict[tuple[str, str], str]:
    """Every object a run could create in the namespace: (kind, name) → resourceVersion."""
    listers = {
        "Deployment": cluster.apps.list_namespaced_deployment,
        "ReplicaSet": cluster.apps.list_namespaced_replica_set,
        "Job": cluster.batch.list_namespaced_job,
        "Pod": cluster.core.list_namespaced_pod,
        "Secret": cluster.core.list_namespaced_secret,
        "ConfigMap": cluster.core.list_namespaced_config_map,
    }
    return {
        (kind, item.metadata.name): item.metadata.resource_version
        for kind, lister in listers.items()
        for item in lister(namespace).items
    }


def _target_state(target_dsn: str) -> tuple[dict, list]:
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        rows = {
            t: dict(conn.execute(f"SELECT id, md5(t::text) FROM public.{t} t").fetchall())
            for t in ("customers", "orders")
        }
        # The running stream moves its position on with keepalives: the row's presence is the fact.
        cdc = conn.execute("SELECT stream FROM zdtp.cdc_state").fetchall()
    return rows, cdc


def _task_state(env: SyncEnv, dag_id: str, run_id: str, task_id: str) -> str | None:
    rows = metadata_rows(
        env.home,
        "SELECT state FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ?",
        (dag_id, run_id, task_id),
    )
    return rows[0][0] if rows else None


def _write(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def test_rerun_while_streaming_is_refused_and_teardown_then_trigger_resyncs(
    sync_env: SyncEnv, source_dsn: str, target_dsn: str, cluster: Cluster, namespace: str
) -> None:
    seed(source_dsn)
    dag_id = sync_env.write(config(TASK, namespace, mode="full+incremental", workers=2))
    sync_file = sync_env.syncs / f"{TASK}.yaml"

    # Three DAG runs and a task run, each of which used to start its own Airflow: one Airflow
    # process serves the first two, another the task run and the third (see ``one_airflow``).
    # None runs while another process writes the metadata DB (the scheduled run below).
    with contextlib.ExitStack() as airflow:
        airflow.enter_context(sync_env.one_airflow())
        first = sync_env.dags_test(dag_id)
        assert first.state == "success", first.output[-3000:]
        assert set(first.tasks) == ALL_TASKS and set(first.tasks.values()) == {"success"}, first.tasks
        _run_copy_pods(sync_env, dag_id, source_dsn, target_dsn)
        assert_same(source_dsn, target_dsn, schemas=["public"])

        # The stream runs (its Deployment exists, its slot is read) and applies source writes.
        stream = InProcessWorker(
            WorkerSpec.model_validate(_xcom(sync_env, dag_id, "prepare_stream", "spec")),
            source_dsn,
            target_dsn,
        )
        stream.start().wait_streaming()
        try:
            _write(
                source_dsn,
                "UPDATE orders SET total = total + 1000 WHERE id <= 200",
                "DELETE FROM customers WHERE id > 490",
                "INSERT INTO orders SELECT g, 1, 7 FROM generate_series(30001, 30100) g",
            )
            wait_same(source_dsn, target_dsn, schemas=["public"], timeout=60, alive=stream.check)
            objects, state = _objects(cluster, namespace), _target_state(target_dsn)
            assert state[1] == [("zdtp_zt_rerun",)], "the stream recorded no applied position"
            assert ("Deployment", "zdtp-zt-rerun-w0-cdc") in objects, objects

            second = sync_env.dags_test(dag_id)

            assert second.state == "failed", second.tasks
            assert second.tasks["prepare_stream"] == "failed", second.tasks
            assert {second.tasks.get(t) for t in ALL_TASKS - {"prepare_stream", "copy[0]", "copy[1]"}} == {
                "upstream_failed"
            }, second.tasks
            assert "sync task 'zt-rerun': the stream is running" in second.output
            assert "would overwrite rows the stream has already updated" in second.output
            assert f"`zdtp teardown {sync_file}`" in second.output, second.output[-3000:]
            assert f"`airflow dags trigger {dag_id}`" in second.output
            # Nothing written: no object created or changed, the target's rows and position as before.
            assert _objects(cluster, namespace) == objects
            assert _target_state(target_dsn) == state

            # A scheduled run finds the same running stream: skipped (not failed), same message.
            airflow.close()
            made = subprocess.run(
                [sys.executable, "-c", MAKE_SCHEDULED_RUN, dag_id, SCHEDULED],
                env=sync_env.env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
            airflow.enter_context(sync_env.one_airflow())
            tick = sync_env.airflow("tasks", "test", dag_id, "prepare_stream", SCHEDULED)
            assert _task_state(sync_env, dag_id, SCHEDULED, "prepare_stream") == "skipped", tick.stdout[
                -3000:
            ]
            said = tick.stdout + tick.stderr  # the log quotes the reason (its ' escaped)
            assert "scheduled run skipped: sync task" in said and "zt-rerun" in said, said[-3000:]
            assert "the stream is running" in said and f"`zdtp teardown {sync_file}`" in said
            assert _objects(cluster, namespace) == objects
            assert _target_state(target_dsn) == state
        finally:
            stream.stop()

        # Writes nobody streams any more (the stream is stopped for good by the teardown below):
        # the target falls behind, and only a new copy can bring it back.
        _write(
            source_dsn,
            "UPDATE customers SET name = 'renamed ' || id WHERE id % 7 = 0",
            "DELETE FROM orders WHERE id BETWEEN 1000 AND 1999",
            "INSERT INTO customers SELECT g, 'late ' || g FROM generate_series(1001, 1050) g",
        )
        with pytest.raises(AssertionError):
            assert_same(source_dsn, target_dsn, schemas=["public"])

        # The resync the message names, word for word: teardown of the file, then trigger again.
        teardown = subprocess.run(
            [sys.executable, "-m", "zdtp_provider.cli", "teardown", str(sync_file), "-o", "json"],
            env=sync_env.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert teardown.returncode == 0, teardown.stderr[-3000:]
        removed = json.loads(teardown.stdout)["removed"]
        assert f"Deployment {namespace}/zdtp-zt-rerun-w0-cdc" in removed, removed
        assert "slot zdtp_zt_rerun" in removed and "publication zdtp_zt_rerun" in removed, removed
        assert any(r.startswith("zdtp.cdc_state") for r in removed), removed

        third = sync_env.dags_test(dag_id)
        assert third.state == "success", third.output[-3000:]
        assert set(third.tasks.values()) == {"success"}, third.tasks
        _run_copy_pods(sync_env, dag_id, source_dsn, target_dsn)
        assert_same(source_dsn, target_dsn, schemas=["public"])
