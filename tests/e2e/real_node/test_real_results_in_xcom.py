"""A real worker's result summary reaches XCom: each copy pod (``fanout: tasks``) or each index of
one Indexed Job (``fanout: indexed-job``) ran on the real node, wrote its summary to the
termination message, and the copy task's XCom holds exactly those summaries — rows that add up
to the source table, each worker's own checksum. (The KWOK tests only see the summary a test
injected through an annotation.)
"""

from __future__ import annotations

import json

import psycopg
import pytest

from devtools.real_node import RealNode
from tests.e2e.conftest import SyncEnv, metadata_rows
from tests.e2e.real_node.test_airflow_on_real_node import _config, _seed
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

ROWS = 20_000  # _seed's accounts table


def copy_xcoms(sync_env: SyncEnv, dag_id: str) -> dict[int, object]:
    """The copy task's ``return_value`` XComs of the latest run, by map index."""
    rows = metadata_rows(
        sync_env.home,
        "SELECT map_index, value FROM xcom WHERE dag_id = ? AND task_id = 'copy' AND key = 'return_value'"
        " AND run_id = (SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1)",
        (dag_id, dag_id),
    )
    out = {}
    for map_index, value in rows:
        decoded = json.loads(value)
        out[map_index] = json.loads(decoded) if isinstance(decoded, str) else decoded
    return out


def _check_results(results: list[dict]) -> None:
    assert results and all(r["status"] == "ok" and r["exit_code"] == 0 for r in results), results
    assert sorted(r["worker"] for r in results) == ["w0", "w1"]
    assert sum(r["rows"] for r in results) == ROWS  # the two halves of the table, nothing else
    assert all(r["rows"] > 0 for r in results)


@pytest.mark.parametrize("fanout", ["tasks", "indexed-job"])
def test_real_worker_results_reach_xcom(
    sync_env: SyncEnv,
    source_dsn: str,
    target_dsn: str,
    cluster: Cluster,
    node_namespace: str,
    real_node: RealNode,
    fanout: str,
) -> None:
    _seed(source_dsn)
    name = f"zt-xcom-{fanout.replace('-job', '')}"
    dag_id = sync_env.write(_config(name, node_namespace, real_node, fanout=fanout))
    run = sync_env.dags_test(dag_id)
    assert run.state == "success", run.output[-4000:]
    xcoms = copy_xcoms(sync_env, dag_id)
    if fanout == "tasks":
        assert sorted(xcoms) == [0, 1], xcoms
        _check_results(list(xcoms.values()))
    else:
        (report,) = xcoms.values()
        assert report["phase"] == "succeeded" and report["succeeded"] == [0, 1], report
        indexes = report["indexes"]
        assert sorted(indexes) == ["0", "1"]
        assert all(i["status"] == "succeeded" and i["exit_codes"] == [0] for i in indexes.values()), indexes
        _check_results([i["result"] for i in indexes.values()])
    with psycopg.connect(source_dsn) as src, psycopg.connect(target_dsn) as tgt:
        q = "SELECT count(*), sum(balance), md5(string_agg(owner, ',' ORDER BY id)) FROM accounts"
        assert src.execute(q).fetchone() == tgt.execute(q).fetchone()
