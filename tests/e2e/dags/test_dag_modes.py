"""Generated sync DAGs end to end under ``airflow dags test`` on the KWOK dev cluster.

KWOK pods run no code, so these runs use ``verify: none`` and check what is observable: task
states, the Kubernetes objects each mode creates (one pod per planned worker, one Indexed Job,
one Deployment), and the real database side effects the Airflow tasks themselves perform (the
replication slot and publication made before any copy). Data really moving through pods is
covered by the real-node end-to-end tests.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.e2e.conftest import SyncEnv
from tests.fixtures.cluster import Cluster

# One DAG run per test: one Airflow process serves the whole module (each test its own env).
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.airflow,
    pytest.mark.postgres,
    pytest.mark.usefixtures("one_airflow_per_module"),
]

SIMULATED = {"annotations": {"sim.zdtp.io/delay": "1s"}, "stream_logs": False}


def seed(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 500) g")
        conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY, customer int, total numeric)")
        conn.execute("INSERT INTO orders SELECT g, g % 500 + 1, g * 1.5 FROM generate_series(1, 30000) g")
        conn.execute("ANALYZE")


def config(name: str, namespace: str, **overrides) -> dict:
    return {
        "name": name,
        "source_conn_id": "zt_source",
        "target_conn_id": "zt_target",
        "include": ["public.*"],
        "workers": 3,
        "namespace": namespace,
        "image": "zdtp/worker:test",
        "verify": "none",
        "pod": SIMULATED,
        **overrides,
    }


def test_full_mapped_tasks_start_one_pod_per_planned_worker(
    sync_env: SyncEnv, source_dsn: str, cluster: Cluster, namespace: str
) -> None:
    seed(source_dsn)
    dag_id = sync_env.write(config("zt-full", namespace, mode="full", fanout="tasks"))
    run = sync_env.dags_test(dag_id)
    assert run.state == "success", run.output[-3000:]
    # The run's own plan task printed its plan (a separate ``airflow tasks test plan`` cost one
    # more Airflow start-up and showed the same line).
    assert "plan for zt-full: 3 worker(s)" in run.output
    assert run.tasks == {
        "plan": "success",
        "copy[0]": "success",
        "copy[1]": "success",
        "copy[2]": "success",
        "verify": "success",
    }, run.tasks


def test_full_indexed_job_runs_all_workers_in_one_job(
    sync_env: SyncEnv, source_dsn: str, cluster: Cluster, namespace: str
) -> None:
    seed(source_dsn)
    dag_id = sync_env.write(config("zt-indexed", namespace, mode="full", fanout="indexed-job"))
    run = sync_env.dags_test(dag_id)
    assert run.state == "success", run.output[-3000:]
    assert run.tasks == {"plan": "success", "copy": "success", "verify": "success"}, run.tasks


def test_dry_run_plans_and_starts_nothing(
    sync_env: SyncEnv, source_dsn: str, cluster: Cluster, namespace: str
) -> None:
    seed(source_dsn)
    dag_id = sync_env.write(config("zt-dry", namespace, mode="full"))
    run = sync_env.dags_test(dag_id, conf={"dry_run": True})
    assert run.state == "success", run.output[-3000:]
    # The plan is printed, then mapped over nothing: ``copy`` has no mapped instance at all and
    # is skipped, and so is ``verify`` (an ignored dry_run would show copy[0..2] succeeding —
    # their pods deleted on success — and verify succeeding).
    assert "plan for zt-dry: 3 worker(s)" in run.output and "dry run: no worker is started" in run.output
    assert run.tasks == {"plan": "success", "copy": "skipped", "verify": "skipped"}, run.tasks
    # Nothing was ever scheduled in the namespace: no pod now, and no scheduler event of one.
    assert cluster.core.list_namespaced_pod(namespace).items == []
    assert [e.reason for e in cluster.core.list_namespaced_event(namespace).items] == []
    assert cluster.core.list_namespaced_secret(namespace, label_selector="zdtp.io/part").items == []


def test_incremental_creates_slot_then_an_available_deployment(
    sync_env: SyncEnv, source_dsn: str, cluster: Cluster, namespace: str
) -> None:
    seed(source_dsn)
    dag_id = sync_env.write(
        config("zt-stream", namespace, mode="incremental", tables=["public.orders"], include=[])
    )
    run = sync_env.dags_test(dag_id)
    assert run.state == "success", run.output[-3000:]
    assert run.tasks == {"prepare_stream": "success", "stream": "success"}, run.tasks
    with psycopg.connect(source_dsn) as conn:
        assert conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE slot_name = 'zdtp_zt_stream'"
        ).fetchone()
        tables = conn.execute(
            "SELECT tablename FROM pg_publication_tables WHERE pubname = 'zdtp_zt_stream'"
        ).fetchall()
    assert tables == [("orders",)]
    deployments = cluster.apps.list_namespaced_deployment(
        namespace, label_selector="zdtp.io/task=zt-stream"
    ).items
    assert len(deployments) == 1
    assert deployments[0].status.available_replicas == 1
    assert deployments[0].spec.template.spec.restart_policy == "Always"


def test_full_then_incremental_orders_slot_copy_verify_stream(
    sync_env: SyncEnv, source_dsn: str, cluster: Cluster, namespace: str
) -> None:
    seed(source_dsn)
    dag_id = sync_env.write(config("zt-mirror", namespace, mode="full+incremental", workers=2))
    run = sync_env.dags_test(dag_id)
    assert run.state == "success", run.output[-3000:]
    assert run.tasks == {
        "prepare_stream": "success",
        "plan": "success",
        "copy[0]": "success",
        "copy[1]": "success",
        "verify": "success",
        "stream": "success",
    }, run.tasks
    deployments = cluster.apps.list_namespaced_deployment(
        namespace, label_selector="zdtp.io/task=zt-mirror"
    ).items
    assert [d.status.available_replicas for d in deployments] == [1]


def test_unknown_table_fails_the_plan_with_its_name(
    sync_env: SyncEnv, source_dsn: str, cluster: Cluster, namespace: str
) -> None:
    seed(source_dsn)
    dag_id = sync_env.write(config("zt-missing", namespace, tables=["public.nope"], include=[]))
    run = sync_env.dags_test(dag_id)
    assert run.state == "failed"
    assert run.tasks["plan"] == "failed"
    assert "source has no table public.nope" in run.output
    assert cluster.core.list_namespaced_pod(namespace).items == []
