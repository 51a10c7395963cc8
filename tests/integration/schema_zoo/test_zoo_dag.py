"""The zoo through the generated Airflow DAG on the dev cluster (``airflow dags test``, KWOK pods).

- A CDC task that includes a keyless table fails in its first task with the reason and the fix,
  and leaves nothing behind: the test namespace holds no zdtp object (pods, Jobs, Deployments,
  Secrets, ConfigMaps), the source no publication or slot, the target nothing.
- A full task over every zoo table (quoted names, 63-byte name, non-ASCII) plans every table and
  starts one pod per planned worker (names and labels Kubernetes accepted).

KWOK pods run no code (``verify: none``); data moving through real processes is covered by the
other zoo tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import SyncEnv, conn_json
from tests.fixtures import schema_zoo
from tests.fixtures.cluster import Cluster
from tests.integration.schema_zoo.test_zoo_refusals import assert_source_untouched, assert_target_empty

# Airflow and Kubernetes do not depend on the source's major version (each DAG run costs minutes
# on two cores): these run with the PostgreSQL 18 source only; the data paths run on both.
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.airflow,
    pytest.mark.postgres,
    pytest.mark.parametrize("source_server", ["pg18"], indirect=True),
]

SIMULATED = {"annotations": {"sim.zdtp.io/delay": "1s"}, "stream_logs": False}
# Objects every namespace gets from Kubernetes itself, not from zdtp.
_BUILTIN = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}


@pytest.fixture
def zoo_env(airflow_k8s: Path, tmp_path: Path, zoo_source: str, target_dsn: str) -> SyncEnv:
    import os

    syncs = tmp_path / "syncs"
    syncs.mkdir()
    env = {
        **os.environ,
        "ZDTP_SYNCS_DIR": str(syncs),
        "AIRFLOW_CONN_ZT_SOURCE": conn_json(zoo_source),
        "AIRFLOW_CONN_ZT_TARGET": conn_json(target_dsn),
    }
    return SyncEnv(syncs=syncs, home=airflow_k8s, env=env)


def _config(name: str, namespace: str, **overrides: object) -> dict:
    return {
        "name": name,
        "source_conn_id": "zt_source",
        "target_conn_id": "zt_target",
        "include": ["zoo.*"],
        "workers": 3,
        "namespace": namespace,
        "image": "zdtp/worker:test",
        "verify": "none",
        "pod": SIMULATED,
        **overrides,
    }


def namespace_objects(cluster: Cluster, namespace: str) -> list[tuple[str, str]]:
    """Every object of the kinds zdtp creates in ``namespace`` (minus Kubernetes' own)."""
    found = []
    for kind, items in (
        ("Pod", cluster.core.list_namespaced_pod(namespace).items),
        ("Secret", cluster.core.list_namespaced_secret(namespace).items),
        ("ConfigMap", cluster.core.list_namespaced_config_map(namespace).items),
        ("ServiceAccount", cluster.core.list_namespaced_service_account(namespace).items),
        ("Service", cluster.core.list_namespaced_service(namespace).items),
        ("Job", cluster.batch.list_namespaced_job(namespace).items),
        ("Deployment", cluster.apps.list_namespaced_deployment(namespace).items),
    ):
        found += [(kind, o.metadata.name) for o in items if (kind, o.metadata.name) not in _BUILTIN]
    return found


def test_dag_refuses_keyless_cdc_table_and_creates_nothing(
    zoo_env: SyncEnv, zoo_source: str, target_dsn: str, cluster: Cluster, namespace: str
) -> None:
    dag_id = zoo_env.write(
        _config(
            "zoo-dag-refuse",
            namespace,
            mode="full+incremental",
            include=[],
            tables=["zoo.text_key", "zoo.nokey_plain"],
        )
    )
    run = zoo_env.dags_test(dag_id)
    assert run.state == "failed", run.output[-3000:]
    assert run.tasks.get("prepare_stream") == "failed", run.tasks
    assert "nokey_plain" in run.output and "primary key" in run.output, run.output[-3000:]
    assert "REPLICA IDENTITY" in run.output or "ADD PRIMARY KEY" in run.output, run.output[-3000:]
    assert namespace_objects(cluster, namespace) == []
    assert_source_untouched(zoo_source)
    assert_target_empty(target_dsn)


def test_dag_starts_one_pod_per_worker_for_every_zoo_name(
    zoo_env: SyncEnv, cluster: Cluster, namespace: str
) -> None:
    dag_id = zoo_env.write(_config("zoo-dag-names", namespace, mode="full"))
    plan = zoo_env.airflow("tasks", "test", dag_id, "plan")
    for table in schema_zoo.TABLES:
        assert table.name in plan.stdout + plan.stderr, table.name
    run = zoo_env.dags_test(dag_id)
    assert run.state == "success", run.output[-3000:]
    assert {t: s for t, s in run.tasks.items() if t.startswith("copy")} == {
        "copy[0]": "success",
        "copy[1]": "success",
        "copy[2]": "success",
    }, run.tasks
    # The pods are deleted on success; the scheduler's events show the API server accepted one
    # pod per worker (names and labels derived from the zoo's names included: invalid ones are
    # rejected at creation).
    scheduled = {
        e.involved_object.name
        for e in cluster.core.list_namespaced_event(namespace).items
        if e.reason == "Scheduled" and e.involved_object.kind == "Pod"
    }
    assert len(scheduled) == 3, scheduled
