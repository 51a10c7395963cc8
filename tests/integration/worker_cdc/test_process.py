"""The worker as Kubernetes runs it: a subprocess with probes, SIGTERM, and a second replica."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest

from tests.integration.worker_cdc.helpers import (
    free_port,
    make_spec,
    start_subprocess_worker,
    state,
    wait_equal,
    wait_until,
)

pytestmark = pytest.mark.postgres


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def metric(port: int, name: str) -> float | None:
    status, body = http_get(port, "/metrics")
    if status != 200:
        return None
    for line in body.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


class Writer(threading.Thread):
    """Keeps inserting rows in small transactions until stopped."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.done = threading.Event()
        self.next_id = 0

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.done.is_set():
                conn.execute(
                    "INSERT INTO t SELECT g, 'v' FROM generate_series(%s::int, %s::int) g",
                    (self.next_id, self.next_id + 49),
                )
                self.next_id += 50
                time.sleep(0.005)

    def stop(self) -> None:
        self.done.set()
        self.join(10)


def test_probes_metrics_and_graceful_sigterm(source_dsn: str, target_dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    port = free_port()
    spec = make_spec(["t"], health_port=port)
    proc = start_subprocess_worker(spec, source_dsn, target_dsn, log=tmp_path / "worker.log")
    writer = Writer(source_dsn)
    try:
        wait_until(lambda: http_get(port, "/readyz")[0] == 200, timeout=30, what="/readyz 200")
        assert http_get(port, "/healthz") == (200, "ok\n")
        writer.start()
        wait_until(lambda: (metric(port, "zdtp_cdc_changes_applied_total") or 0) >= 500, timeout=30)
        _, body = http_get(port, "/metrics")
        for name in ("zdtp_cdc_lag_bytes", "zdtp_cdc_lag_seconds", "zdtp_cdc_lease_held"):
            assert f'{name}{{task="{spec.task}"' in body
        # SIGTERM mid-stream: the worker commits (or rolls back) its batch and exits 0 quickly.
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert time.monotonic() - sent < 10
        writer.stop()
    finally:
        writer.stop()
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "worker.log").read_text()
    result = json.loads([line for line in log.splitlines() if line.startswith("{")][-1])
    assert result["status"] == "ok" and result["rows"] > 0
    assert "received SIGTERM" in log
    assert "stopping: " in log and "rolling back" not in log
    # A restart picks up exactly where the committed state says.
    proc = start_subprocess_worker(spec, source_dsn, target_dsn, log=tmp_path / "worker2.log")
    try:
        wait_equal(source_dsn, target_dsn, ["t"], timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_two_replicas_one_writer_and_takeover(source_dsn: str, target_dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    ports = [free_port(), free_port()]
    specs = [make_spec(["t"], health_port=p) for p in ports]
    # Same stream (task) for both replicas; only the probe port differs.
    specs[1] = specs[1].model_copy(update={"task": specs[0].task})
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, spec in enumerate(specs):
            procs.append(start_subprocess_worker(spec, source_dsn, target_dsn, log=tmp_path / f"w{i}.log"))
        wait_until(
            lambda: (
                sum(http_get(p, "/readyz")[0] == 200 for p in ports) == 1
                and all(http_get(p, "/healthz")[0] == 200 for p in ports)
            ),
            timeout=30,
            what="one ready replica and one live standby",
        )
        leader = next(i for i, p in enumerate(ports) if http_get(p, "/readyz")[0] == 200)
        standby = 1 - leader
        assert http_get(ports[standby], "/readyz") == (503, "standby: another replica holds the lease\n")
        with psycopg.connect(source_dsn, autocommit=True) as src:
            src.execute("INSERT INTO t SELECT g, 'a' FROM generate_series(1, 1000) g")
        wait_equal(source_dsn, target_dsn, ["t"], timeout=30)
        assert metric(ports[leader], "zdtp_cdc_changes_applied_total") == 1000
        assert metric(ports[standby], "zdtp_cdc_changes_applied_total") == 0
        # Kill the leader hard: the standby takes the lease and applies what follows.
        procs[leader].kill()
        killed = time.monotonic()
        with psycopg.connect(source_dsn, autocommit=True) as src:
            src.execute("INSERT INTO t SELECT g, 'b' FROM generate_series(1001, 2000) g")
            src.execute("UPDATE t SET v = 'c' WHERE id % 7 = 0")
        wait_until(lambda: http_get(ports[standby], "/readyz")[0] == 200, timeout=30, what="takeover")
        takeover = time.monotonic() - killed
        wait_equal(source_dsn, target_dsn, ["t"], timeout=30)
        assert takeover < 10, takeover
        assert state(target_dsn)[0][4] == 1000 + 1000 + 2000 // 7
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=20)
