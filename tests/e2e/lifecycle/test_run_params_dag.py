"""Run params through a real ``airflow dags test`` of a generated full+incremental DAG on the dev
cluster: ``tables`` narrows every task of the run (the publication prepare_stream makes, the
plan, the stream's spec), a table outside the config's selection fails the run before anything is
created, and ``workers`` above the config's maximum is refused."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.e2e.conftest import SyncEnv, metadata_rows
from tests.e2e.dags.test_dag_modes import config, seed

pytestmark = [pytest.mark.cluster, pytest.mark.airflow, pytest.mark.postgres]


def _xcom(env: SyncEnv, dag_id: str, task_id: str, key: str = "return_value"):
    rows = metadata_rows(
        env.home,
        "SELECT value FROM xcom WHERE dag_id = ? AND task_id = ? AND key = ? ORDER BY dag_run_id DESC",
        (dag_id, task_id, key),
    )
    value = json.loads(rows[0][0]) if rows else None
    return json.loads(value) if isinstance(value, str) else value


def test_tables_param_narrows_every_task_and_cannot_widen(
    sync_env: SyncEnv, source_dsn: str, cluster, namespace: str
) -> None:
    seed(source_dsn)
    with psycopg.connect(source_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE secrets (id int PRIMARY KEY, v text)")
    dag_id = sync_env.write(
        config("zt-narrow", namespace, mode="full+incremental", workers=2, exclude=["public.secrets"])
    )
    # Three runs in a row: one Airflow process serves them (its start-up is paid once).
    with sync_env.one_airflow():
        run = sync_env.dags_test(dag_id, conf={"tables": ["public.orders"], "workers": 1})
        assert run.state == "success", run.output[-3000:]
        assert run.tasks == {
            "prepare_stream": "success",
            "plan": "success",
            "copy[0]": "success",
            "verify": "success",
            "stream": "success",
        }, run.tasks
        with psycopg.connect(source_dsn) as conn:
            members = conn.execute(
                "SELECT tablename FROM pg_publication_tables WHERE pubname = 'zdtp_zt_narrow'"
            ).fetchall()
        assert members == [("orders",)], "prepare_stream must publish only the narrowed tables"
        plan = _xcom(sync_env, dag_id, "plan")
        assert [[t["source"]["name"] for t in s["tables"]] for s in plan] == [["orders"]]
        spec = _xcom(sync_env, dag_id, "prepare_stream", "spec")
        assert [t["source"]["name"] for t in spec["tables"]] == ["orders"]

        # Outside the selection (excluded) and not present: the run fails before creating anything.
        wide = sync_env.dags_test(dag_id, conf={"tables": ["public.secrets"]})
        assert wide.state == "failed", wide.tasks
        assert wide.tasks["prepare_stream"] == "failed", wide.tasks
        assert "not in sync task 'zt-narrow'" in wide.output and "only narrow" in wide.output

        # Above the config's workers: refused when the run is created (param maximum).
        too_many = sync_env.dags_test(dag_id, conf={"workers": 5})
        assert "workers: 5 is greater than the maximum of 2" in too_many.output, too_many.output[-2000:]
