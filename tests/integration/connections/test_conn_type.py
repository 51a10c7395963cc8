"""A database connection that is not ``postgres`` fails every operator before any Kubernetes write.

An HTTP connection (a real Airflow connection from ``AIRFLOW_CONN_*``) as ``source_conn_id``: each
operator's ``execute`` raises an AirflowException naming the argument, the connection id and its
type, and the test namespace on the dev cluster holds no Pod, Job, Deployment, Secret or ConfigMap
from zdtp afterwards.
"""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowException

from tests.integration.provider._context import context
from zdtp_provider.connections import resolve_dsns
from zdtp_provider.operators.full import FullSyncOperator
from zdtp_provider.operators.incremental import IncrementalSyncOperator
from zdtp_provider.operators.job import FullSyncJobOperator, IndexedFullSyncJobOperator

SPEC = {"task": "orders", "tables": [{"source": "public.orders"}]}
MESSAGE = r"source_conn_id: connection 'zt_http' has conn_type 'http'; zdtp needs a 'postgres' connection"


@pytest.fixture
def http_and_pg_conns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_ZT_HTTP",
        json.dumps({"conn_type": "http", "host": "api.example.com", "login": "u", "password": "zt-http-pw"}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_ZT_PG",
        json.dumps(
            {"conn_type": "postgres", "host": "db.example", "login": "u", "password": "p", "schema": "d"}
        ),
    )


def test_resolving_a_non_postgres_connection_names_id_and_type(http_and_pg_conns) -> None:
    with pytest.raises(AirflowException, match=MESSAGE):
        resolve_dsns(source_conn_id="zt_http", target_conn_id="zt_pg")
    assert set(resolve_dsns(source_conn_id=None, target_conn_id="zt_pg")) == {"target-dsn"}


def _operators(namespace: str) -> list:
    common = {
        "namespace": namespace,
        "image": "zdtp/worker:1",
        "source_conn_id": "zt_http",
        "target_conn_id": "zt_pg",
        "deferrable": False,
    }
    return [
        FullSyncOperator(task_id="full", spec=SPEC, get_logs=False, **common),
        FullSyncJobOperator(task_id="job", spec=SPEC, **common),
        IndexedFullSyncJobOperator(task_id="indexed", specs=[SPEC, {**SPEC, "worker": "w1"}], **common),
        IncrementalSyncOperator(task_id="inc", spec=SPEC, **common),
    ]


@pytest.mark.cluster
@pytest.mark.airflow
def test_every_operator_fails_before_writing_to_kubernetes(
    cluster, namespace: str, airflow_k8s, http_and_pg_conns
) -> None:
    for operator in _operators(namespace):
        with pytest.raises(AirflowException, match=MESSAGE):
            operator.execute(context(task_id=operator.task_id))
    assert cluster.core.list_namespaced_pod(namespace).items == []
    assert cluster.batch.list_namespaced_job(namespace).items == []
    assert cluster.apps.list_namespaced_deployment(namespace).items == []
    zdtp = "app.kubernetes.io/managed-by=zdtp"
    assert cluster.core.list_namespaced_secret(namespace, label_selector="zdtp.io/part").items == []
    assert cluster.core.list_namespaced_config_map(namespace, label_selector=zdtp).items == []
    assert cluster.core.list_namespaced_config_map(namespace, label_selector="zdtp.io/part").items == []
