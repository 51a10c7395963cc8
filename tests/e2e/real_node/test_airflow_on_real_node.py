"""Generated sync DAGs whose worker pods really run on the kubelet node (not simulated)."""

from __future__ import annotations

import psycopg
import pytest

from devtools.real_node import RealNode, pod_placement
from tests.e2e.conftest import SyncEnv, conn_json
from tests.fixtures.cluster import Cluster

# One DAG run per test: one Airflow process serves the whole module (each test its own
# env), so its start-up (imports, execution API) is paid once, not per test.
pytestmark = [
    pytest.mark.realnode,
    pytest.mark.cluster,
    pytest.mark.airflow,
    pytest.mark.postgres,
    pytest.mark.usefixtures("one_airflow_per_module"),
]


def _config(name: str, namespace: str, node: RealNode, **overrides) -> dict:
    placement = pod_placement()
    return {
        "name": name,
        "source_conn_id": "zt_source",
        "target_conn_id": "zt_target",
        "tables": ["public.accounts"],
        "workers": 2,
        "chunk_rows": 5000,
        "namespace": namespace,
        "image": node.worker_image,
        "verify": "checksum",
        "pod": {
            "host_network": True,
            "node_selector": placement["nodeSelector"],
            "tolerations": placement["tolerations"],
        },
        **overrides,
    }


def _seed(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (id bigint PRIMARY KEY, owner text, balance numeric(12,2))")
        conn.execute(
            "INSERT INTO accounts SELECT g, 'owner ' || g, g * 0.01 FROM generate_series(1, 20000) g"
        )
        conn.execute("ANALYZE")


def test_full_sync_dag_copies_through_real_pods(
    sync_env: SyncEnv,
    source_dsn: str,
    target_dsn: str,
    cluster: Cluster,
    node_namespace: str,
    real_node: RealNode,
) -> None:
    _seed(source_dsn)
    dag_id = sync_env.write(_config("zt-real", node_namespace, real_node))
    run = sync_env.dags_test(dag_id)
    assert run.state == "success", run.output[-4000:]
    assert run.tasks == {"plan": "success", "copy[0]": "success", "copy[1]": "success", "verify": "success"}
    # verify (checksum) already compared both sides inside the DAG; check the target directly too.
    with psycopg.connect(source_dsn) as src, psycopg.connect(target_dsn) as tgt:
        q = "SELECT count(*), sum(balance), md5(string_agg(owner, ',' ORDER BY id)) FROM accounts"
        assert src.execute(q).fetchone() == tgt.execute(q).fetchone()


def test_wrong_target_password_fails_the_plan_before_any_pod(
    sync_env: SyncEnv,
    pg_server,
    source_dsn: str,
    target_dsn: str,
    cluster: Cluster,
    node_namespace: str,
    real_node: RealNode,
) -> None:
    """The plan task checks the target (lossy columns, #12), so wrong target credentials now fail
    the run there, with libpq's reason and no worker pod; the worker's own exit 78 is covered by
    test_real_pods.py (real pod) and tests/integration/provider (operator)."""
    _seed(source_dsn)
    wrong = target_dsn.replace(f":{pg_server.password}@", ":not-the-password@")
    sync_env.env["AIRFLOW_CONN_ZT_TARGET"] = conn_json(wrong)
    dag_id = sync_env.write(_config("zt-real-78", node_namespace, real_node, workers=1))
    run = sync_env.dags_test(dag_id)
    assert run.state == "failed"
    assert run.tasks["plan"] == "failed", run.tasks
    assert not any(t.startswith("copy") and state == "success" for t, state in run.tasks.items()), run.tasks
    assert "password authentication failed" in run.output, run.output[-4000:]
    assert "not-the-password" not in run.output and pg_server.password not in run.output
    assert cluster.core.list_namespaced_pod(node_namespace).items == []
