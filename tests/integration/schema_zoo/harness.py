"""Drive zdtp over the zoo the way a run does: config → catalog → plan → real worker processes.

A full sync is the planner's WorkerSpecs (three workers) run as three concurrent
``zdtp-worker full`` processes; a stream is ``prepare_stream`` (publication + slot, as the DAG's
first task does) followed by a ``zdtp-worker incremental`` process that tests can SIGKILL and
restart. Nothing here is mocked: these are the same entry points the operators call.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.ports import free_port
from tests.fixtures import schema_zoo
from tests.integration.worker_cdc.helpers import start_subprocess_worker, wait_until
from tests.integration.worker_full.helpers import REPO, worker_env
from zdtp_provider.config import SyncTaskConfig, parse_config
from zdtp_provider.planner import plan_workers, read_catalog
from zdtp_worker.contract.spec import WorkerSpec

WORKERS = 3
# Small chunks so every table of a few thousand rows is cut into several resumable chunks,
# including the text-key and composite-key tables whose chunk bounds depend on collation.
CHUNK_ROWS = 400


def zoo_config(name: str, *, mode: str = "full", **extra: Any) -> SyncTaskConfig:
    data: dict[str, Any] = {
        "name": name,
        "source_conn_id": "zoo_source",
        "target_conn_id": "zoo_target",
        "include": [f"{schema_zoo.SCHEMA}.*"],
        "mode": mode,
        "workers": WORKERS,
        "chunk_rows": CHUNK_ROWS,
        "verify": "count",
    }
    data.update(extra)
    return parse_config(data, origin=f"<zoo config {name}>")


def plan(source_dsn: str, config: SyncTaskConfig, *, run_id: str = "zoo-run") -> list[WorkerSpec]:
    return plan_workers(config, read_catalog(source_dsn, config), run_id=run_id, workers=WORKERS)


@dataclass(frozen=True)
class Finished:
    spec: WorkerSpec
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        tail = "\n".join(self.stderr.strip().splitlines()[-5:])
        return f"worker {self.spec.worker}: exit {self.returncode}\n{tail}"


def start_full_worker(spec: WorkerSpec, *, source_dsn: str, target_dsn: str) -> subprocess.Popen[str]:
    """One ``zdtp-worker full`` process (stdout: the result line; stderr: events and errors)."""
    return subprocess.Popen(
        [sys.executable, "-m", "zdtp_worker", "full"],
        env=worker_env(spec.to_json(), source_dsn, target_dsn),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def run_full_workers(
    specs: list[WorkerSpec], *, source_dsn: str, target_dsn: str, timeout: float = 600
) -> list[Finished]:
    """Run every spec as its own ``zdtp-worker full`` process, all at once; wait for all."""
    procs = [(spec, start_full_worker(spec, source_dsn=source_dsn, target_dsn=target_dsn)) for spec in specs]
    done = []
    for spec, proc in procs:
        out, err = proc.communicate(timeout=timeout)
        done.append(Finished(spec, proc.returncode, out, err))
    return done


def assert_all_ok(finished: list[Finished]) -> None:
    bad = [f for f in finished if f.returncode != 0]
    assert not bad, "full-sync workers failed:\n" + "\n".join(f.describe() for f in bad)


def stream_spec(config: SyncTaskConfig, tables: list[str], names: dict[str, str]) -> WorkerSpec:
    """The incremental spec the DAG's ``prepare_stream`` task hands to the stream operator."""
    return WorkerSpec.model_validate(
        {
            "mode": "incremental",
            "task": config.name,
            "run_id": f"{config.name}-stream",
            "tables": [{"source": t} for t in tables],
            "incremental": {
                "slot": names["slot"],
                "publication": names["publication"],
                "batch_max_seconds": 0.2,
                "health_port": free_port(),
            },
        }
    )


@dataclass
class StreamProcess:
    """A ``zdtp-worker incremental`` process with its log; ``kill9()`` and ``start()`` again."""

    spec: WorkerSpec
    source_dsn: str
    target_dsn: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    exits: list[int] = field(default_factory=list)

    def start(self) -> StreamProcess:
        self.starts += 1
        with self.log.open("a") as fh:
            fh.write(f"\n===== start #{self.starts} =====\n")
        self.proc = start_subprocess_worker(self.spec, self.source_dsn, self.target_dsn, log=self.log)
        return self

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise with the log tail if the worker exited (a crash must fail the test at once)."""
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None:
            raise AssertionError(f"incremental worker exited with {code}:\n{self.log_tail()}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.check_alive()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.exits.append(self.proc.wait(timeout=30))

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as Kubernetes does; the worker finishes its batch and exits 0."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self.exits.append(code)
        return code

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        self.exits.append(code)
        return code

    def wait_streaming(self, target_dsn: str, timeout: float = 120) -> None:
        """Until the stream's state row exists on the target (the worker is past its start-up)."""
        import psycopg

        def ready() -> bool:
            self.check_alive()
            with psycopg.connect(target_dsn, autocommit=True) as conn:
                row = conn.execute("SELECT to_regclass('zdtp.cdc_state')").fetchone()
                if row is None or row[0] is None:
                    return False
                return conn.execute("SELECT count(*) FROM zdtp.cdc_state").fetchone()[0] > 0

        wait_until(ready, timeout=timeout, interval=0.5, what="incremental worker to stream")


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``zdtp <args>`` (the provider CLI) as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "zdtp_provider.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("ZDTP_")}, **(env or {})},
    )
