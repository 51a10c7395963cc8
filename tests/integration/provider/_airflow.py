"""Run a DAG file under real Airflow (``dag.test()`` in a subprocess) and read back the outcome.

A subprocess keeps each run's Airflow state (DAGS_FOLDER, connections, signal handlers) apart
and lets a test SIGTERM a running task like a worker shutdown would. Task states and XComs are
read from the metadata DB afterwards, never inferred from the exit code.
"""

from __future__ import annotations

import atexit
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
from tests.fixtures.processes import close_stdin_and_wait

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


# start_dag's process, started ahead: Airflow's imports (seconds of CPU; ~9 s wall on two busy
# cores) happen while the previous test still runs, then it reads its one request (the DAG file,
# its id, the env) and runs RUNNER like a fresh ``python -c RUNNER``: one process per DAG run, so
# a SIGTERM still reaches that task's process alone.
WARM = f"""
import json, os, sys
import airflow.sdk, airflow.models, airflow.settings  # the start-up, paid ahead
# What dag.test() imports later (measured: ~3.8 s CPU of a ~10 s trivial run, these included).
import airflow.api_fastapi.execution_api.app, airflow.api_fastapi.execution_api.routes
import airflow.sdk.execution_time.supervisor, airflow.providers.cncf.kubernetes.operators.pod
request = json.loads(sys.stdin.readline() or "null")
if request is None:  # never used: ended at exit
    sys.exit(0)
os.environ.clear(); os.environ.update(request["env"])
# Read from the config at import: the env of this run's DAG folder came only now.
airflow.settings.DAGS_FOLDER = os.environ["AIRFLOW__CORE__DAGS_FOLDER"]
sys.argv[1:] = [request["path"], request["dag_id"]]
exec(compile({RUNNER!r}, "<runner>", "exec"), {{"__name__": "__main__"}})
"""

_warm: tuple[subprocess.Popen, dict[str, str]] | None = None


def _popen(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )


def _warm_fits(base: dict[str, str], full: dict[str, str], call: dict[str, str]) -> bool:
    """May a process started with ``base`` run with ``full``? Only if nothing Airflow reads at
    import differs: the DAG folder (set by WARM), connections (read at use) and the call's own
    non-Airflow variables may."""
    for key in base.keys() | full.keys():
        if base.get(key) == full.get(key):
            continue
        if key == "AIRFLOW__CORE__DAGS_FOLDER" or key.startswith("AIRFLOW_CONN_"):
            continue
        if key in call and not key.startswith("AIRFLOW"):
            continue
        return False
    return True


def _end_warm() -> None:
    global _warm
    if _warm is not None:
        close_stdin_and_wait(_warm[0])
        _warm = None


atexit.register(_end_warm)


def start_dag(path: Path, dag_id: str, *, env: dict[str, str]) -> subprocess.Popen:
    """``dag.test()`` of the DAG file in its own process, running when this returns."""
    global _warm
    full = _env(path, env)
    if _warm is not None and _warm[0].poll() is None and _warm_fits(_warm[1], full, env):
        proc, _warm = _warm[0], None
        assert proc.stdin is not None
        proc.stdin.write(json.dumps({"path": str(path), "dag_id": dag_id, "env": full}) + "\n")
        proc.stdin.flush()
    else:
        _end_warm()
        proc = _popen([RUNNER, str(path), dag_id], full)
    base = {**os.environ, "PYTHONPATH": str(REPO)}
    _warm = (_popen([WARM], base), base)  # the next one, warming up while this test runs
    return proc


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
import airflow.api_fastapi.execution_api.app, airflow.api_fastapi.execution_api.routes
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
