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

from tests.integration.lifecycle.helpers import make_task_footprint

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
    assert s["last_full_run"]["rows"] == 1 and s["last_full_run"]["chunks"] == 1
    f = rows[copied]
    assert f["mode"] == "full" and "deployment" not in f and "slot" not in f and f["errors"] == []

    text = subprocess.run(base, env=env, capture_output=True, text=True, check=False)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.strip().splitlines()
    assert len(lines) == 2, lines
    (line,) = [ln for ln in lines if ln.startswith(streamed)]
    assert "deploy=available restarts=0" in line and "slot=inactive" in line and "rows=1" in line
