"""`zdtp plan` shows how many COPY streams each worker gets, and whether the config chose it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[2]


def _plan(config: Path, source_dsn: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "zdtp_provider.cli", "plan", str(config), "--source-dsn", source_dsn],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("ZDTP_")},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _streams(plan_text: str) -> list[int]:
    return sorted(
        int(line.split(": ")[1].split()[0]) for line in plan_text.splitlines() if "COPY stream(s)" in line
    )


def test_plan_prints_each_workers_streams_automatic_or_set(source_dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE big (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
        conn.execute("CREATE TABLE small (id int PRIMARY KEY)")
        conn.execute("INSERT INTO small VALUES (1)")
        conn.execute("ANALYZE")
    base = (
        "source_conn_id: src\ntarget_conn_id: tgt\ninclude: [public.big, public.small]\n"
        "workers: 2\nchunk_rows: 1000\nresources: {requests: {cpu: '2'}}\n"
    )
    auto = tmp_path / "auto.yaml"
    auto.write_text(f"name: plan-auto\n{base}", encoding="utf-8")
    out = _plan(auto, source_dsn)
    # Each worker gets half the big table (10 chunks) and 2 cores: the auto choice's cap (4).
    assert _streams(out) == [4, 4], out
    assert out.count("chosen from table size and CPU request") == 2, out

    small_cpu = tmp_path / "small-cpu.yaml"
    quarter_core = base.replace("cpu: '2'", "cpu: '250m'")
    small_cpu.write_text(f"name: plan-small-cpu\n{quarter_core}", encoding="utf-8")
    assert _streams(_plan(small_cpu, source_dsn)) == [2, 2]  # a quarter core relays two streams

    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(f"name: plan-fixed\n{base}streams: 3\n", encoding="utf-8")
    out = _plan(fixed, source_dsn)
    worker_lines = [line.strip() for line in out.splitlines() if "COPY stream(s)" in line]
    assert len(worker_lines) == 2 and all(
        ": 3 COPY stream(s), set by `streams`" in line for line in worker_lines
    ), out
