"""Helpers for CDC integration tests: specs, in-process and subprocess workers, table comparison."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from devtools.ports import free_port  # noqa: F401  (the CDC tests import it from here)
from zdtp_worker.contract.result import WorkerResult
from zdtp_worker.contract.spec import WorkerSpec
from zdtp_worker.incremental.health import Metrics
from zdtp_worker.incremental.main import run_incremental

REPO = Path(__file__).resolve().parents[3]


def make_spec(tables: list[str], **incremental: object) -> WorkerSpec:
    task = f"cdc-{uuid.uuid4().hex[:10]}"
    return WorkerSpec.model_validate(
        {
            "mode": "incremental",
            "task": task,
            "run_id": "test",
            "tables": [{"source": t} for t in tables],
            "incremental": {"batch_max_seconds": 0.2, **incremental},
        }
    )


@dataclass
class InProcessWorker:
    """The worker in a thread of the test process; ``stop()`` is what SIGTERM does."""

    spec: WorkerSpec
    source_dsn: str
    target_dsn: str
    initial_snapshot: bool = False
    stop_event: threading.Event = field(default_factory=threading.Event)
    metrics: Metrics | None = None
    result: WorkerResult | None = None
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self) -> InProcessWorker:
        self.metrics = Metrics(task=self.spec.task, slot="test")

        def run() -> None:
            try:
                self.result = run_incremental(
                    self.spec,
                    source_dsn=self.source_dsn,
                    target_dsn=self.target_dsn,
                    stop=self.stop_event,
                    initial_snapshot=self.initial_snapshot,
                    metrics=self.metrics,
                    health_port=-1,
                )
            except BaseException as exc:  # reported by stop()/check()
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return self

    def wait_streaming(self, timeout: float = 30) -> InProcessWorker:
        def streaming() -> bool:
            self.check()
            return bool(self.metrics and self.metrics.streaming)

        wait_until(streaming, timeout=timeout, what="worker to stream")
        return self

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def stop(self, timeout: float = 30) -> WorkerResult:
        self.stop_event.set()
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"
        self.check()
        assert self.result is not None
        return self.result


def worker_env(spec: WorkerSpec, source_dsn: str, target_dsn: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ZDTP_WORKER_SPEC=spec.to_json(),
        ZDTP_SOURCE_DSN=source_dsn,
        ZDTP_TARGET_DSN=target_dsn,
        PYTHONPATH=str(REPO),
        **extra,
    )
    return env


def start_subprocess_worker(
    spec: WorkerSpec,
    source_dsn: str,
    target_dsn: str,
    *,
    log: Path | None = None,
    args: list[str] | None = None,
) -> subprocess.Popen[bytes]:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    return subprocess.Popen(
        [sys.executable, "-m", "zdtp_worker", "incremental", *(args or [])],
        env=worker_env(spec, source_dsn, target_dsn),
        stdout=out,
        stderr=subprocess.STDOUT if log else subprocess.PIPE,
        cwd=REPO,
    )


def run_worker_once(
    spec: WorkerSpec, source_dsn: str, target_dsn: str, timeout: float = 60
) -> tuple[int, str]:
    """Run the worker CLI to completion (for failing inputs); return (exit code, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "zdtp_worker", "incremental"],
        env=worker_env(spec, source_dsn, target_dsn),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    return proc.returncode, proc.stderr


def table_rows(dsn: str, table: str, columns: str = "*", order: str = "1") -> list[tuple] | None:
    with psycopg.connect(dsn) as conn:
        try:
            return conn.execute(f"SELECT {columns} FROM {table} ORDER BY {order}").fetchall()
        except psycopg.errors.UndefinedTable:
            return None


def wait_until(
    predicate: Callable[[], bool], timeout: float = 60, interval: float = 0.2, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def wait_equal(
    source_dsn: str,
    target_dsn: str,
    tables: list[str],
    *,
    columns: str = "*",
    timeout: float = 60,
    worker: InProcessWorker | None = None,
) -> None:
    def same() -> bool:
        if worker is not None:
            worker.check()
        return all(table_rows(source_dsn, t, columns) == table_rows(target_dsn, t, columns) for t in tables)

    try:
        wait_until(same, timeout=timeout, what="target to equal source")
    except AssertionError:
        for t in tables:
            src, tgt = table_rows(source_dsn, t, columns), table_rows(target_dsn, t, columns)
            print(f"{t}: source {len(src or [])} rows, target {len(tgt or [])} rows")
            diff = [(a, b) for a, b in zip(src or [], tgt or [], strict=False) if a != b][:3]
            print("first differences:", diff)
        raise


def state(target_dsn: str) -> list[tuple]:
    with psycopg.connect(target_dsn) as conn:
        return conn.execute(
            "SELECT stream, commit_lsn::text, end_lsn::text, transactions, changes FROM zdtp.cdc_state"
        ).fetchall()
