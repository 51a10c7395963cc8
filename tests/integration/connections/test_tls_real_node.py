"""The CA reaches the worker pod through a Secret, and the pod copies over ``verify-full``.

FullSyncOperator under real Airflow (``dag.test`` in a subprocess) with ``tls_secret`` and
``sslmode="verify-full"``; the Airflow connections name the CA by an Airflow-side path
(``/opt/airflow/certs/pg-ca.crt``, which does not even exist here) and the Secret holds a file of
the same name. The worker pod runs on the real kubelet node (hostNetwork to reach the TLS-only
server on 127.0.0.1), so the rows in the target prove the mounted CA verified the server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devtools.postgres15 import Postgres15Server
from devtools.real_node import RealNode, RealNodeUnavailable, ensure_real_node, pod_placement
from tests.fixtures.cluster import Cluster, create_namespace
from tests.integration.provider._airflow import run_dag, write_dag

pytestmark = [pytest.mark.realnode, pytest.mark.cluster, pytest.mark.airflow, pytest.mark.postgres]

AIRFLOW_SIDE_CA = "/opt/airflow/certs/pg-ca.crt"


@pytest.fixture(scope="module")
def real_node(cluster: Cluster) -> RealNode:
    try:
        return ensure_real_node()
    except RealNodeUnavailable as exc:
        pytest.skip(f"no real node on this machine: {exc}")


@pytest.fixture
def node_namespace(cluster: Cluster, real_node: RealNode) -> Iterator[str]:
    name = create_namespace(cluster, level="privileged")  # hostNetwork
    yield name
    cluster.core.delete_namespace(name, propagation_policy="Foreground")


def _conn(server: Postgres15Server, db: str) -> str:
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": server.host,
            "port": server.port,
            "login": "postgres",
            "password": server.password,
            "schema": db,
            "extra": {"sslmode": "prefer", "sslrootcert": AIRFLOW_SIDE_CA},
        }
    )


def test_tls_secret_reaches_the_worker_pod(
    cluster: Cluster,
    node_namespace: str,
    real_node: RealNode,
    airflow_k8s,
    tls_server: Postgres15Server,
    databases: tuple[str, str],
    ca_file: Path,
    tmp_path: Path,
) -> None:
    cluster.core.create_namespaced_secret(
        node_namespace,
        {"metadata": {"name": "pg-tls"}, "type": "Opaque", "data": None, "stringData": {
            Path(AIRFLOW_SIDE_CA).name: ca_file.read_text()
        }},
    )  # fmt: skip
    placement = pod_placement()
    body = (
        "from zdtp_provider.operators.full import FullSyncOperator\n"
        "\n---\n"
        "FullSyncOperator(task_id='copy', namespace=os.environ['ZT_NS'], image=os.environ['ZT_IMAGE'], "
        "image_pull_policy='Never', spec={'task': 'tls', 'tables': [{'source': 'public.t'}]}, "
        "source_conn_id='zt_tls_src', target_conn_id='zt_tls_tgt', sslmode='verify-full', "
        "tls_secret='pg-tls', hostnetwork=True, get_logs=False, deferrable=False, poll_interval=1, "
        f"node_selector={placement['nodeSelector']!r}, tolerations={placement['tolerations']!r})\n"
    )
    path = write_dag(tmp_path / "dags", "zt_tls", body)
    source_db, target_db = databases
    env = {
        "ZT_NS": node_namespace,
        "ZT_IMAGE": real_node.worker_image,
        "AIRFLOW_CONN_ZT_TLS_SRC": _conn(tls_server, source_db),
        "AIRFLOW_CONN_ZT_TLS_TGT": _conn(tls_server, target_db),
    }
    out = run_dag(path, "zt_tls", env=env, timeout=400)
    assert out.state("copy") == "success", out.output[-4000:]
    assert out.xcom("copy")["rows"] == 1000
    target = tls_server.dsn(target_db) + f"?sslmode=verify-full&sslrootcert={ca_file}"
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1000,)
