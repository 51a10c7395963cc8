"""Both workers log JSON lines with the same identity fields; the CDC status line reports real
lag, applied LSN and changes/s from a running stream (test PostgreSQL, real worker processes)."""

from __future__ import annotations

import json
import signal
import threading
import urllib.request
from pathlib import Path

import pytest

from tests.integration.worker_cdc.helpers import (
    InProcessWorker,
    free_port,
    start_subprocess_worker,
    wait_until,
)
from tests.integration.worker_cdc.helpers import make_spec as cdc_spec
from tests.integration.worker_full.helpers import execute, run_worker, scalar, spec_dict
from zdtp_worker import logs

pytestmark = pytest.mark.postgres

COMMON = {"ts", "level", "event", "mode", "task", "run_id", "worker"}


def _json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
    return parsed


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_full_and_cdc_workers_write_json_lines_with_the_same_fields(
    source_dsn: str, target_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(logs.STATUS_INTERVAL_ENV, "1")  # the CDC worker's status line, every second
    execute(source_dsn, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    execute(source_dsn, "INSERT INTO t SELECT g, 'x' FROM generate_series(1, 500) g")
    full = run_worker(spec_dict(["t"], run_id="logs-full"), source_dsn, target_dsn)
    assert full.returncode == 0, full.stderr[-2000:]
    full_lines = _json_lines(full.stderr)
    assert full_lines
    for line in full_lines:
        assert set(line) >= COMMON, line
        assert (line["mode"], line["run_id"]) == ("full", "logs-full")

    port = free_port()
    spec = cdc_spec(["t"], health_port=port)
    log = tmp_path / "cdc.log"
    proc = start_subprocess_worker(spec, source_dsn, target_dsn, log=log)
    try:
        wait_until(lambda: _ready(port), timeout=60, what="CDC worker streaming (/readyz)")
        execute(source_dsn, "INSERT INTO t VALUES (501, 'y')")
        wait_until(lambda: scalar(target_dsn, "SELECT count(*) FROM t WHERE id = 501") == 1, what="change")
        wait_until(lambda: '"event": "status"' in log.read_text(), what="a status line")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, log.read_text()[-3000:]
    *cdc_logs, _result = log.read_text().splitlines()  # stdout's last line is the result summary
    cdc_lines = _json_lines("\n".join(cdc_logs))
    assert any("received SIGTERM" in line.get("msg", "") for line in cdc_lines)
    for line in cdc_lines:
        assert set(line) >= COMMON, line
        assert (line["mode"], line["task"], line["run_id"]) == ("incremental", spec.task, spec.run_id)
    status = [line for line in cdc_lines if line["event"] == "status"]
    assert status and {"lag_seconds", "applied_lsn", "changes_per_s"} <= set(status[-1]), status
    # The same identity keys in both (an event's own fields come on top of them).
    assert {k for k in full_lines[0] if k in COMMON} == {k for k in cdc_lines[0] if k in COMMON}


def test_status_line_reports_lag_lsn_and_rate_of_a_running_stream(
    source_dsn: str, target_dsn: str, capfd: pytest.CaptureFixture[str]
) -> None:
    execute(source_dsn, "CREATE TABLE s (id int PRIMARY KEY, v text)")
    worker = InProcessWorker(cdc_spec(["s"]), source_dsn, target_dsn).start().wait_streaming()
    stop = threading.Event()
    statuses: list[dict] = []

    def caught_up() -> bool:
        for line in capfd.readouterr().err.splitlines():
            if line.startswith("{") and '"event": "status"' in line:
                statuses.append(json.loads(line))
        return bool(statuses) and statuses[-1]["changes_total"] >= 2000

    try:
        assert worker.metrics is not None
        logs.StatusLine(worker.metrics, stop=stop, interval=0.5).start()
        execute(source_dsn, "INSERT INTO s SELECT g, 'x' FROM generate_series(1, 2000) g")
        wait_until(caught_up, timeout=60, what="a status line showing the 2000 changes")
    finally:
        stop.set()
        worker.stop()
    # changes/s is the rate since the previous line: positive on the line that saw them arrive.
    assert any(s["changes_per_s"] > 0 for s in statuses), statuses
    final = statuses[-1]
    assert final["applied_lsn"] != "0/0" and "/" in final["applied_lsn"], final
    assert final["lag_seconds"] >= 0 and final["streaming"] is True, final
    assert {"lag_bytes", "transactions_total", "slot_retained_wal_bytes"} <= set(final)
