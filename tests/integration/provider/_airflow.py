"""Run a DAG file under real Airflow (``dag.test()`` in a subprocess) and read back the outcome.

A subprocess keeps each run's Airflow state (DAGS_FOLDER, connections, signal handlers) apart
and lets a test SIGTERM a running task like a worker shutdown would. Task states and XComs are
read from the metadata DB afterwards, never inferred from the exit code.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO
from tests.fixtures.airflow_server import AirflowServer

RUNNER = textwrap.dedent(
    """
    import importlib.util, json, sys
    path, dag_id = sys.argv[1], sys.argv[2]
    spec = importlib.util.spec_from_file_location(dag_id, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dr = module.dag.test()
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select
    out = {}
    with create_session() as s:
        for ti in dr.get_task_instances(session=s):
            rows = s.execute(
                select(XComModel.key, XComModel.value).where(
                    XComModel.dag_id == ti.dag_id, XComModel.run_id == ti.run_id,
                    XComModel.task_id == ti.task_id)
            ).all()
            out[ti.task_id] = {"state": str(ti.state), "try_number": ti.try_number,
                               "xcom": {k: v for k, v in rows}}
    print("ZDTP-RESULT " + json.dumps(out, default=str))
    """
)


@dataclass
class DagOutcome:
    tasks: dict
    output: str

    def state(self, task_id: str) -> str:
        return self.tasks[task_id]["state"]

    def xcom(self, task_id: str, key: str = "return_value"):
        value = self.tasks[task_id]["xcom"].get(key)
        return json.loads(value) if isinstance(value, str) else value


def write_dag(folder: Path, dag_id: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dag_id}.py"
    header = "import json, os\nimport pendulum\nfrom airflow.sdk import DAG\n"
    dag = f"\nwith DAG(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:\n"
    path.write_text(
        header
        + textwrap.dedent(body.split("\n---\n")[0])
        + dag
        + textwrap.indent(textwrap.dedent(body.split("\n---\n")[1]), "    ")
    )
    return path


def _env(path: Path, env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **env, "AIRFLOW__CORE__DAGS_FOLDER": str(path.parent), "PYTHONPATH": str(REPO)}


def start_dag(path: Path, dag_id: str, *, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(path), dag_id],
        env=_env(path, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )


def finish(proc: subprocess.Popen, *, timeout: float = 240) -> DagOutcome:
    output, _ = proc.communicate(timeout=timeout)
    return _outcome(output, f"rc={proc.returncode}")


def _outcome(output: str, what: object) -> DagOutcome:
    for line in reversed(output.splitlines()):
        if line.startswith("ZDTP-RESULT "):
            return DagOutcome(tasks=json.loads(line.removeprefix("ZDTP-RESULT ")), output=output)
    raise AssertionError(f"dag.test produced no result ({what}):\n{output[-4000:]}")


def run_dag(path: Path, dag_id: str, *, env: dict[str, str], timeout: float = 240) -> DagOutcome:
    if _shared is not None:  # inside one_airflow(): the module's long-lived runner
        return _shared.run(path, dag_id, env=env, timeout=timeout)
    return finish(start_dag(path, dag_id, env=env), timeout=timeout)


# RUNNER's work in one process serving several runs (tests/fixtures/airflow_server.py): each DAG
# file is executed again per run, with that run's env; only the interpreter and Airflow's imports
# (~7 s CPU per start) are paid once. SIGTERM tests keep their own process (start_dag): the signal
# must reach the task's process alone.
RUN_PROGRAM = f"""
import os, sys
import airflow.sdk, airflow.models, airflow.settings  # the start-up paid once
RUNNER = {RUNNER!r}

def handle(request):
    # Each run has its own DAG folder: dag.test() syncs the DAG from the bundle at this path,
    # which Airflow reads from the config once, at import (a fresh process per run read it anew).
    airflow.settings.DAGS_FOLDER = os.environ["AIRFLOW__CORE__DAGS_FOLDER"]
    sys.argv[1:] = [request["path"], request["dag_id"]]
    exec(compile(RUNNER, "<runner>", "exec"), {{"__name__": "__runner__"}})

def answer(request, code):
    return {{"code": code}}
"""


class _RunServer(AirflowServer):
    """Started at the first run (with that run's DAG folder in its env)."""

    def __init__(self) -> None:
        super().__init__(RUN_PROGRAM, prefix="zdtp-dag-runner-", cwd=REPO)

    def run(self, path: Path, dag_id: str, *, env: dict[str, str], timeout: float) -> DagOutcome:
        request = {"path": str(path), "dag_id": dag_id}
        _, output = self.call(request, env=_env(path, env), timeout=timeout, what=f"dag.test of {dag_id}")
        return _outcome(output, self.runs)


_shared: _RunServer | None = None


@contextlib.contextmanager
def one_airflow() -> Iterator[None]:
    """Inside: ``run_dag`` runs each DAG in one long-lived Airflow process (started at the first
    run), not a new interpreter per run; ``start_dag`` still starts its own."""
    global _shared
    _shared = _RunServer()
    try:
        yield
    finally:
        server, _shared = _shared, None
        server.close()
