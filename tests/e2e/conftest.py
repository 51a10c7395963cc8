"""Run zdtp's generated DAGs with the real Airflow CLI against the dev cluster and Postgres.

Each test writes its own sync-task YAML into a temp ``ZDTP_SYNCS_DIR``; connections come from
``AIRFLOW_CONN_*`` env; task states are read from the Airflow metadata DB (``airflow dags test``
and ``airflow tasks test`` exit 0 even when a task fails).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml


def conn_json(dsn: str) -> str:
    parts = urlsplit(dsn)
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": parts.hostname,
            "port": parts.port,
            "login": parts.username,
            "password": parts.password,
            "schema": parts.path.lstrip("/"),
        }
    )


@dataclass
class DagRunResult:
    state: str | None
    tasks: dict[str, str]  # "task" or "task[map_index]" -> state
    output: str


@dataclass
class SyncEnv:
    syncs: Path
    home: Path
    env: dict[str, str]

    def write(self, config: dict) -> str:
        (self.syncs / f"{config['name']}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        return "zdtp_" + config["name"].replace("-", "_")

    def airflow(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        exe = Path(sys.executable).with_name("airflow")
        return subprocess.run(
            [str(exe), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def dags_test(self, dag_id: str, *, conf: dict | None = None, timeout: float = 600) -> DagRunResult:
        args = ["dags", "test", dag_id]
        if conf:
            args += ["--conf", json.dumps(conf)]
        proc = self.airflow(*args, timeout=timeout)
        return self.last_run(dag_id, proc.stdout + proc.stderr)

    def last_run(self, dag_id: str, output: str = "") -> DagRunResult:
        # Read right after `airflow dags test` exits, the WAL-mode metadata DB once answered
        # "database disk image is malformed" and read fine a moment later (integrity_check ok):
        # retry a few times, then let the error fail the test.
        for attempt in range(5):
            try:
                return self._read_last_run(dag_id, output)
            except sqlite3.DatabaseError:
                if attempt == 4:
                    raise
                time.sleep(2)
        raise AssertionError("unreachable")

    def _read_last_run(self, dag_id: str, output: str) -> DagRunResult:
        with contextlib.closing(sqlite3.connect(self.home / "airflow.db")) as db:
            row = db.execute(
                "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
            ).fetchone()
            if row is None:
                return DagRunResult(None, {}, output)
            tis = db.execute(
                "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
                (dag_id, row[0]),
            ).fetchall()
        tasks = {(t if m < 0 else f"{t}[{m}]"): s for t, m, s in tis}
        return DagRunResult(row[1], tasks, output)


@pytest.fixture
def sync_env(airflow_k8s: Path, tmp_path: Path, source_dsn: str, target_dsn: str) -> SyncEnv:
    syncs = tmp_path / "syncs"
    syncs.mkdir()
    env = {
        **os.environ,
        "ZDTP_SYNCS_DIR": str(syncs),
        "AIRFLOW_CONN_ZT_SOURCE": conn_json(source_dsn),
        "AIRFLOW_CONN_ZT_TARGET": conn_json(target_dsn),
        # The 30 s default is about parse cost, which tests/e2e/airflow_cli measures; on a busy
        # 2-core test machine the first kubernetes_asyncio import alone was seen to exceed it.
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
    }
    return SyncEnv(syncs=syncs, home=airflow_k8s, env=env)
