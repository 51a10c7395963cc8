"""Plan-time check of tables that already exist on the target: a lossy target column refuses the
whole plan (column + both types), before any worker — so a multi-worker copy never starts and
nothing is written to the target. The same rule the worker applies before it writes
(``zdtp_worker.pg.target_fit``), through ``zdtp_worker.control.target_check``.

- the planner (``read_catalog(target_dsn=...)``) and ``zdtp plan --target-dsn``, on PostgreSQL;
- the generated DAG on the dev cluster: ``plan`` fails, no Kubernetes object is created.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.e2e.conftest import SyncEnv, conn_json
from tests.integration.worker_full.helpers import execute
from zdtp_provider.config import SyncTaskConfig
from zdtp_provider.planner import PlanningError, read_catalog

REPO = Path(__file__).resolve().parents[3]

SOURCE_DDL = """
CREATE TABLE public.money (id bigint PRIMARY KEY, amount numeric(12,4), note text);
CREATE TABLE public.events (id bigint PRIMARY KEY, at timestamptz NOT NULL);
CREATE TABLE public.widened (id int PRIMARY KEY, n int, label varchar(20));
INSERT INTO public.money SELECT g, g / 7.0, 'n' || g FROM generate_series(1, 2000) g;
INSERT INTO public.events SELECT g, now() FROM generate_series(1, 2000) g;
INSERT INTO public.widened SELECT g, g, 'w' FROM generate_series(1, 2000) g;
"""
# Existing target tables: two lossy columns, one table that only widens (accepted).
TARGET_DDL = """
CREATE TABLE public.money (id bigint PRIMARY KEY, amount numeric(12,2), note text);
CREATE TABLE public.events (id bigint PRIMARY KEY, at date NOT NULL);
CREATE TABLE public.widened (id bigint PRIMARY KEY, n bigint, label text);
"""
TABLES = ["public.money", "public.events", "public.widened"]


def _config(**kw: object) -> SyncTaskConfig:
    return SyncTaskConfig.model_validate(
        {"name": "lossy", "source_conn_id": "s", "target_conn_id": "t", "tables": TABLES, **kw}
    )


def target_state(dsn: str) -> tuple[list[str], int, bool]:
    """(tables, rows in them, zdtp schema present) of the target's public schema."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1"
            ).fetchall()
        ]
        rows = sum(conn.execute(f"SELECT count(*) FROM public.{t}").fetchone()[0] for t in tables)  # type: ignore[index]
        zdtp = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'zdtp'").fetchone() is not None
    return tables, rows, zdtp


UNTOUCHED = (["events", "money", "widened"], 0, False)


def _assert_lossy_named(text: str) -> None:
    assert "target table public.money: column 'amount' is numeric(12,2)" in text, text
    assert "source type numeric(12,4)" in text, text
    assert "target table public.events: column 'at' is date" in text, text
    assert "source type timestamp with time zone" in text, text
    assert "widened" not in text, text  # int -> bigint, varchar(20) -> text: safe widenings


@pytest.mark.postgres
def test_plan_refuses_lossy_target_columns_and_writes_nothing(source_dsn: str, target_dsn: str) -> None:
    execute(source_dsn, SOURCE_DDL)
    execute(target_dsn, TARGET_DDL)
    with pytest.raises(PlanningError) as err:
        read_catalog(source_dsn, _config(workers=3), target_dsn=target_dsn)
    _assert_lossy_named(str(err.value))
    assert target_state(target_dsn) == UNTOUCHED
    # Without the target the source alone plans fine (the worker would refuse before writing).
    assert {e.name for e in read_catalog(source_dsn, _config())} == set(TABLES)
    # Widenings only: the plan goes ahead.
    ok = read_catalog(source_dsn, _config(tables=["public.widened"]), target_dsn=target_dsn)
    assert [e.name for e in ok] == ["public.widened"]


@pytest.mark.postgres
def test_cli_plan_with_target_dsn_matches_the_dag(source_dsn: str, target_dsn: str, tmp_path: Path) -> None:
    execute(source_dsn, SOURCE_DDL)
    execute(target_dsn, TARGET_DDL)
    task = tmp_path / "lossy.yaml"
    task.write_text(
        yaml.safe_dump(
            {"name": "lossy", "source_conn_id": "zt_s", "target_conn_id": "zt_t", "tables": TABLES}
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZDTP_", "AIRFLOW_CONN_"))}

    def plan(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "zdtp_provider.cli",
                "plan",
                str(task),
                "--source-dsn",
                source_dsn,
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
            env=env,
        )

    refused = plan("--target-dsn", target_dsn)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    _assert_lossy_named(refused.stderr)
    assert target_dsn.split("@")[0] not in refused.stderr  # no credentials in the message
    # $ZDTP_TARGET_DSN works the same way.
    env["ZDTP_TARGET_DSN"] = target_dsn
    assert plan().returncode == 1
    del env["ZDTP_TARGET_DSN"]
    # No target known (no flag, env or connection): plans from the source and says what it skipped.
    unchecked = plan()
    assert unchecked.returncode == 0, unchecked.stderr
    assert "target not checked" in unchecked.stderr
    assert target_state(target_dsn) == UNTOUCHED


@pytest.mark.cluster
@pytest.mark.airflow
@pytest.mark.postgres
def test_dag_plan_refuses_lossy_target_and_starts_no_worker(
    airflow_k8s: Path, tmp_path: Path, source_dsn: str, target_dsn: str, cluster, namespace: str
) -> None:
    from tests.integration.schema_zoo.test_zoo_dag import namespace_objects

    execute(source_dsn, SOURCE_DDL)
    execute(target_dsn, TARGET_DDL)
    syncs = tmp_path / "syncs"
    syncs.mkdir()
    env = SyncEnv(
        syncs=syncs,
        home=airflow_k8s,
        env={
            **os.environ,
            "ZDTP_SYNCS_DIR": str(syncs),
            "AIRFLOW_CONN_ZT_SOURCE": conn_json(source_dsn),
            "AIRFLOW_CONN_ZT_TARGET": conn_json(target_dsn),
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
        },
    )
    dag_id = env.write(
        {
            "name": "lossy-target",
            "source_conn_id": "zt_source",
            "target_conn_id": "zt_target",
            "tables": TABLES,
            "mode": "full",
            "workers": 3,
            "namespace": namespace,
            "image": "zdtp/worker:test",
            "pod": {"annotations": {"sim.zdtp.io/delay": "1s"}, "stream_logs": False},
        }
    )
    run = env.dags_test(dag_id)
    assert run.state == "failed", run.output[-3000:]
    assert run.tasks.get("plan") == "failed", run.tasks
    assert not any(t.startswith("copy") and s == "success" for t, s in run.tasks.items()), run.tasks
    _assert_lossy_named(run.output)
    assert namespace_objects(cluster, namespace) == []
    assert target_state(target_dsn) == UNTOUCHED
