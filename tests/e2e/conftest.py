"""Run zdtp's generated DAGs with the real Airflow CLI against the dev cluster and Postgres.

Each test writes its own sync-task YAML into a temp ``ZDTP_SYNCS_DIR``; connections come from
``AIRFLOW_CONN_*`` env; run and task states are read by Airflow from its metadata DB after the
run (``airflow dags test`` and ``airflow tasks test`` exit 0 even when a task fails).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.fixtures.airflow_server import AirflowServer


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


def metadata_rows(home: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """The rows of one read of the session's SQLite metadata DB (``home/airflow.db``), its
    connection closed after the read: ``with sqlite3.connect(...)`` only commits and left every
    reader's connection open in the long pytest process."""
    with contextlib.closing(sqlite3.connect(home / "airflow.db")) as db:
        return db.execute(sql, params).fetchall()


@dataclass
class DagRunResult:
    state: str | None
    tasks: dict[str, str]  # "task" or "task[map_index]" -> state
    output: str


# ``airflow dags test`` (or any CLI command) in one process serving several runs
# (tests/fixtures/airflow_server.py): the CLI's own code path (parser, ``args.func``) runs each
# time, so the DAG file and the sync YAMLs are parsed again per run, with that run's env; only the
# interpreter, Airflow's imports and its in-process execution API (~10-40 s per start on two busy
# cores) are paid once.
#
# The run's outcome is read by Airflow's own ORM in the process that wrote it: reading the
# WAL-mode SQLite file from the test process right after the run twice answered "database disk
# image is malformed" for several seconds (integrity_check ok afterwards) in full-suite runs.
DAGS_TEST_PROGRAM = """
from airflow.__main__ import cli_parser
# What the first ``dags test`` imports (its in-process execution API; ~1.5 s CPU): paid at start,
# while the caller still sets up, not inside the first run.
import airflow.api_fastapi.execution_api.app, airflow.api_fastapi.execution_api.routes
parser = cli_parser.get_parser()

def handle(request):
    args = parser.parse_args(request["argv"])
    args.func(args)

def last_run(dag_id):
    from sqlalchemy import select
    from airflow.models import DagRun, TaskInstance
    from airflow.utils.session import create_session
    with create_session() as session:
        run = session.execute(
            select(DagRun.run_id, DagRun.state).where(DagRun.dag_id == dag_id)
            .order_by(DagRun.id.desc()).limit(1)
        ).first()
        if run is None:
            return {"state": None, "tasks": {}}
        tis = session.execute(
            select(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state)
            .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id)
        ).all()
    return {"state": run.state, "tasks": {(t if m < 0 else f"{t}[{m}]"): s for t, m, s in tis}}

def answer(request, code):
    return {"code": code, "run": last_run(request["dag_id"]) if request.get("dag_id") else None}
"""


class _DagsTestServer(AirflowServer):
    """Started at once with ``env``: Airflow's imports overlap the caller's set-up."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(DAGS_TEST_PROGRAM, prefix="zdtp-dags-test-")
        self.start(env)

    def run(
        self, argv: list[str], timeout: float, env: dict[str, str], dag_id: str | None = None
    ) -> tuple[int, str, dict | None]:
        """Run ``airflow <argv>`` in the server with ``env``: its exit code, its output and (with
        ``dag_id``) that DAG's last run as ``{"state", "tasks"}``."""
        reply, output = self.call(
            {"argv": argv, "dag_id": dag_id}, env=env, timeout=timeout, what=f"airflow {' '.join(argv)}"
        )
        return int(reply["code"]), output, reply["run"]


@dataclass
class SyncEnv:
    syncs: Path
    home: Path
    env: dict[str, str]
    _server: _DagsTestServer | None = field(default=None, repr=False)

    @contextlib.contextmanager
    def one_airflow(self) -> Iterator[None]:
        """Inside: every ``dags_test``/``airflow`` call runs in one long-lived Airflow process (the
        same CLI code path, its exit code and output).

        For tests that make several DAG runs in a row.
        """
        self._server = _DagsTestServer(self.env)
        try:
            yield
        finally:
            server, self._server = self._server, None
            server.close()

    def write(self, config: dict) -> str:
        (self.syncs / f"{config['name']}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        return "zdtp_" + config["name"].replace("-", "_")

    def airflow(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        if self._server is not None:  # inside one_airflow(): stdout holds stdout and stderr
            code, output, _ = self._server.run(list(args), timeout, self.env)
            return subprocess.CompletedProcess(["airflow", *args], code, output, "")
        exe = Path(sys.executable).with_name("airflow")
        return subprocess.run(
            [str(exe), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def dags_test(self, dag_id: str, *, conf: dict | None = None, timeout: float = 600) -> DagRunResult:
        """``airflow dags test`` and the run's outcome as Airflow recorded it (the CLI exits 0 even
        when a task fails)."""
        args = ["dags", "test", dag_id]
        if conf:
            args += ["--conf", json.dumps(conf)]
        if self._server is not None:
            _, output, run = self._server.run(args, timeout, self.env, dag_id)
        else:
            server = _DagsTestServer(self.env)
            try:
                _, output, run = server.run(args, timeout, self.env, dag_id)
            finally:
                server.close()
        assert run is not None
        return DagRunResult(run["state"], run["tasks"], output)


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


@pytest.fixture(scope="module")
def _module_airflow() -> Iterator[_DagsTestServer]:
    server = _DagsTestServer(dict(os.environ))
    yield server
    server.close()


@pytest.fixture
def one_airflow_per_module(sync_env: SyncEnv, _module_airflow: _DagsTestServer) -> SyncEnv:
    """Opt in with ``pytest.mark.usefixtures``: this test's ``sync_env`` Airflow calls go to one
    Airflow process shared by its module (each call with this test's own env: syncs dir,
    connections), so a module of one-run tests pays Airflow's start-up once, not per test."""
    sync_env._server = _module_airflow
    return sync_env
