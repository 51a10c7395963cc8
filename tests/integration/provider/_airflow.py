"""Run a DAG file under real Airflow (``dag.test()`` in a subprocess) and read back the outcome.

A subprocess keeps each run's Airflow state (DAGS_FOLDER, connections, signal handlers) apart
and lets a test SIGTERM a running task like a worker shutdown would. Task states and XComs are
read from the metadata DB afterwards, never inferred from the exit code.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO
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


# RUNNER's work in one process serving several runs, one per stdin line (the DAG file, its id and
# the caller's environment): each run's stdout+stderr go to its own file, then its ZDTP-RESULT
# line is written to the reply fd. Each DAG file is executed again per run, with that run's env;
# only the interpreter and Airflow's imports (~7 s CPU per start) are paid once. SIGTERM tests
# keep their own process (start_dag): the signal must reach the task's process alone.
SERVER = """
import json, os, sys, traceback
reply = os.fdopen(int(sys.argv[1]), "w")
import airflow.sdk, airflow.models, airflow.settings  # the start-up paid once
stdout, stderr = os.dup(1), os.dup(2)
for line in sys.stdin:
    request = json.loads(line)
    os.environ.clear(); os.environ.update(request["env"])  # the caller's, read fresh at each use
    # Each run has its own DAG folder: dag.test() syncs the DAG from the bundle at this path,
    # which Airflow reads from the config once, at import (a fresh process per run read it anew).
    airflow.settings.DAGS_FOLDER = os.environ["AIRFLOW__CORE__DAGS_FOLDER"]
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    sys.stdout.flush(); sys.stderr.flush()
    os.dup2(log, 1); os.dup2(log, 2)
    try:
        sys.argv[1:] = [request["path"], request["dag_id"]]
        exec(compile(RUNNER, "<runner>", "exec"), {"__name__": "__runner__"})
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush(); sys.stderr.flush()
        os.dup2(stdout, 1); os.dup2(stderr, 2); os.close(log)
    reply.write("done\\n"); reply.flush()
"""


class _RunServer:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="zdtp-dag-runner-"))
        self.runs = 0
        self.proc: subprocess.Popen | None = None

    def _start(self, env: dict[str, str]) -> None:
        read, write = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"RUNNER = {RUNNER!r}\n{SERVER}", str(write)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=(self.dir / "server.log").open("w"),
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            pass_fds=(write,),
        )
        os.close(write)
        self.reply = os.fdopen(read)

    def run(self, path: Path, dag_id: str, *, env: dict[str, str], timeout: float) -> DagOutcome:
        full_env = _env(path, env)
        if self.proc is None or self.proc.poll() is not None:  # first run, or after a timed-out one
            self.stop()
            self._start(full_env)
        assert self.proc is not None and self.proc.stdin is not None
        self.runs += 1
        log = self.dir / f"run-{self.runs}.log"
        request = {"path": str(path), "dag_id": dag_id, "env": full_env, "log": str(log)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        done: list[str] = []
        reader = threading.Thread(target=lambda: done.append(self.reply.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        output = log.read_text(errors="replace") if log.exists() else ""
        if not done or done[0] != "done\n":
            self.stop()
            server = (self.dir / "server.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"dag.test of {dag_id}: no answer in {timeout}s\n{output[-3000:]}{server}")
        return _outcome(output, self.runs)

    def stop(self) -> None:
        if self.proc is not None:
            close_stdin_and_wait(self.proc)
            self.reply.close()
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


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
