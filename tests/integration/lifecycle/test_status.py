"""``zdtp status`` on the dev cluster and a real PostgreSQL: one line (or JSON object) per sync
task with the Deployment's state, the slot and its retained WAL, the applied position and the
last full run, read from the API and the databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
import yaml

from tests.integration.lifecycle.helpers import make_task_footprint, run_sql
from tests.integration.provider._context import context
from zdtp_provider.config import load_config
from zdtp_provider.sensors.incremental import IncrementalSyncSensor
from zdtp_provider.status import status_line, summary

pytestmark = [pytest.mark.cluster, pytest.mark.postgres, pytest.mark.airflow]


def test_status_reports_each_sync_task(
    cluster, namespace, airflow_k8s, db_conns, source_dsn, target_dsn, tmp_path
) -> None:
    streamed, copied = f"lc-st-{uuid.uuid4().hex[:6]}", f"lc-full-{uuid.uuid4().hex[:6]}"
    make_task_footprint(
        task=streamed, table="public.ts", source_dsn=source_dsn, target_dsn=target_dsn, namespace=namespace
    )
    syncs = tmp_path / "syncs"
    syncs.mkdir()
    common = {"source_conn_id": "lc_src", "target_conn_id": "lc_tgt", "namespace": namespace}
    (syncs / "a.yaml").write_text(
        yaml.safe_dump({"name": streamed, "tables": ["public.ts"], "mode": "full+incremental", **common})
    )
    (syncs / "b.yaml").write_text(
        yaml.safe_dump({"name": copied, "tables": ["public.ts"], "mode": "full", **common})
    )
    env = {
        **os.environ,
        "AIRFLOW_CONN_LC_SRC": source_dsn.replace("postgresql://", "postgres://", 1),
        "AIRFLOW_CONN_LC_TGT": target_dsn.replace("postgresql://", "postgres://", 1),
    }
    base = [
        sys.executable,
        "-m",
        "zdtp_provider.cli",
        "status",
        str(syncs),
        "--kubeconfig",
        str(cluster.kubeconfig),
    ]
    out = subprocess.run([*base, "-o", "json"], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    rows = {r["task"]: r for r in json.loads(out.stdout)}
    s = rows[streamed]
    assert s["errors"] == [], s
    assert s["mode"] == "full+incremental" and s["deployment"] == "available" and s["restarts"] == 0
    assert s["slot"] == "inactive" and s["retained_wal_bytes"] > 0 and s["wal_verdict"] == "ok"
    assert s["applied"]["end_lsn"] == "0/2"
    full = s["last_full_run"]
    assert (full["run_id"], full["rows"], full["chunks"], full["planned_chunks"]) == ("r1", 1, 1, 1), full
    assert full["result"] == "complete"
    verify = s["last_verify"]
    assert [verify[k] for k in ("run_id", "level", "ok", "state")] == ["r1", "count", True, "success"]
    assert verify["source"] == "zdtp.verify_log"
    f = rows[copied]
    assert f["mode"] == "full" and "deployment" not in f and "slot" not in f and f["errors"] == []
    # The full-only task shares the table: same last run; no verify of its own in the log.
    assert f["last_full_run"]["run_id"] == "r1" and f["last_verify"] is None, f

    text = subprocess.run(base, env=env, capture_output=True, text=True, check=False)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.strip().splitlines()
    assert len(lines) == 2, lines
    (line,) = [ln for ln in lines if ln.startswith(streamed)]
    assert "deploy=available restarts=0" in line and "slot=inactive" in line and "rows=1" in line
    assert "(complete) rows=1 chunks=1/1" in line and "verify=success[count]@" in line, line

    # A newer run that stopped half-way is the last run, incomplete; a failed verify is shown as
    # failed with its first problem. Without zdtp.verify_log (an older target) nothing breaks.
    run_sql(
        target_dsn,
        "INSERT INTO zdtp.full_plans (run_id, target_table, source_table, copy_table, chunks, created_at)"
        " VALUES ('r2', 'public.ts', 'public.ts', 'public.ts', '[{\"no\": 0}, {\"no\": 1}]',"
        " now() + '1 min')",
        "INSERT INTO zdtp.full_chunks (run_id, target_table, chunk_no, rows, bytes, worker, seconds)"
        " VALUES ('r2', 'public.ts', 1, 5, 1, 'w0', 0.1)",
        "INSERT INTO zdtp.verify_log (task, run_id, verified_at, level, ok, detail) VALUES"
        f" ('{streamed}', 'r2', now() + '2 min', 'count', false, '{{\"problems\": [\"chunk 0 missing\"]}}')",
    )
    config = load_config(syncs / "a.yaml")
    now = summary(
        task=streamed,
        mode=config.mode,
        namespace=namespace,
        hook=None,
        source_dsn=None,
        target_dsn=target_dsn,
        tables=["public.ts"],
    )
    assert now["errors"] == [], now
    last = now["last_full_run"]
    assert [last[k] for k in ("run_id", "result", "chunks", "planned_chunks", "rows")] == [
        "r2",
        "incomplete",
        1,
        2,
        5,
    ]
    assert now["last_verify"]["state"] == "failed" and now["last_verify"]["problem"] == "chunk 0 missing"
    line = status_line(now)
    assert "(incomplete) rows=5 chunks=1/2" in line and "verify=failed[count]@" in line, line
    run_sql(target_dsn, "DROP TABLE zdtp.verify_log")
    old = summary(
        task=streamed,
        mode=config.mode,
        namespace=namespace,
        hook=None,
        source_dsn=None,
        target_dsn=target_dsn,
        tables=["public.ts"],
    )
    assert old["errors"] == [] and old["last_full_run"]["run_id"] == "r2" and old["last_verify"] is None, old


def test_sensor_returns_the_status_summary(
    cluster, namespace, airflow_k8s, db_conns, source_dsn, target_dsn, monkeypatch
) -> None:
    """IncrementalSyncSensor's XCom is the task's status (what the Airflow UI shows): Deployment,
    slot, applied position, last full run over the stream's tables (read from its publication)
    and last verify, plus the one-line form."""
    task = f"lc-sn-{uuid.uuid4().hex[:6]}"
    make_task_footprint(
        task=task, table="public.tsn", source_dsn=source_dsn, target_dsn=target_dsn, namespace=namespace
    )
    monkeypatch.setenv("AIRFLOW_CONN_LC_SRC", source_dsn.replace("postgresql://", "postgres://", 1))
    monkeypatch.setenv("AIRFLOW_CONN_LC_TGT", target_dsn.replace("postgresql://", "postgres://", 1))
    sensor = IncrementalSyncSensor(
        task_id="s", task=task, namespace=namespace, source_conn_id="lc_src", target_conn_id="lc_tgt"
    )
    done = sensor.poke(context())
    assert done.is_done, done.xcom_value
    status = done.xcom_value["status"]
    assert status["errors"] == [], status
    assert status["task"] == task and status["deployment"] == "available" and status["restarts"] == 0
    assert status["slot"] == "inactive" and status["applied"]["end_lsn"] == "0/2"
    assert status["last_full_run"]["run_id"] == "r1" and status["last_full_run"]["result"] == "complete"
    assert status["last_verify"]["state"] == "success" and status["last_verify"]["run_id"] == "r1"
    line = done.xcom_value["status_line"]
    assert line.startswith(task) and "deploy=available" in line and "verify=success[count]@" in line, line

    # Deferrable path: healthy at once, returned by execute with the same summary.
    report = IncrementalSyncSensor(
        task_id="s2",
        task=task,
        namespace=namespace,
        source_conn_id="lc_src",
        target_conn_id="lc_tgt",
        tables=["public.nothing"],
        deferrable=True,
    ).execute(context())
    assert report["status"]["last_full_run"] is None and report["status"]["last_verify"]["run_id"] == "r1"
