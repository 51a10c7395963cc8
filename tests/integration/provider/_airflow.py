"""Run a DAG file under real Airflow (``dag.test()`` in a subprocess) and read back the outcome.

A subprocess keeps each run's Airflow state (DAGS_FOLDER, connections, signal handlers) apart
and lets a test SIGTERM a running task like a worker shutdown would. Task states and XComs are
read from the metadata DB afterwards, never inferred from the exit code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

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


def start_dag(path: Path, dag_id: str, *, env: dict[str, str]) -> subprocess.Popen:
    full_env = {**os.environ, **env, "AIRFLOW__CORE__DAGS_FOLDER": str(path.parent), "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(path), dag_id],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )


def finish(proc: subprocess.Popen, *, timeout: float = 240) -> DagOutcome:
    output, _ = proc.communicate(timeout=timeout)
    for line in reversed(output.splitlines()):
        if line.startswith("ZDTP-RESULT "):
            return DagOutcome(tasks=json.loads(line.removeprefix("ZDTP-RESULT ")), output=output)
    raise AssertionError(f"dag.test produced no result (rc={proc.returncode}):\n{output[-4000:]}")


def run_dag(path: Path, dag_id: str, *, env: dict[str, str], timeout: float = 240) -> DagOutcome:
    return finish(start_dag(path, dag_id, env=env), timeout=timeout)
