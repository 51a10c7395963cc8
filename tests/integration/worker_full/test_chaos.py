"""Chaos: a 1M-row copy survives ``kill -9`` at random points.

The worker runs as a real subprocess and is killed at >= 5 random moments; each time it is rerun
with the same run id. The final target must equal the source (count + checksum), hold no
duplicate key, and the logs must show at most one chunk redone per kill: every chunk is committed
exactly once (``zdtp.full_chunks``), and all ``chunk_start`` events together number at most
chunks + kills. The same with three queue workers killed and restarted at random.

The target table exists beforehand *without* a primary key (zdtp accepts an existing target), so
a chunk committed twice shows up as duplicate ids instead of being masked by a key violation.
Kill timing and victims come from the ``seed`` fixture: ``ZDTP_TEST_SEED`` replays a run's choices
(the moments still depend on the machine's speed), and a failure's report prints the seed.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.worker_full.helpers import (
    REPO,
    duplicates,
    execute,
    fingerprint,
    make_spec,
    scalar,
    spec_dict,
    worker_env,
)
from zdtp_worker.full import enqueue_chunks

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROWS = 1_000_000
CHUNK_ROWS = 40_000
KILLS = 5


def _fill(source_dsn: str) -> None:
    execute(
        source_dsn,
        "CREATE TABLE big (id bigint PRIMARY KEY, name text, created timestamptz, amount numeric(12,2))",
    )
    execute(
        source_dsn,
        f"INSERT INTO big SELECT g, 'row ' || md5(g::text), timestamptz '2024-01-01' + g * interval '1 s', "
        f"(g % 10000) / 100.0 FROM generate_series(1, {ROWS}) g",
    )
    execute(source_dsn, "VACUUM ANALYZE big")


def _target_without_key(target_dsn: str) -> None:
    # Same columns, no PK: a double copy must be visible. The plain index keeps the worker's
    # per-chunk range DELETE cheap.
    execute(
        target_dsn,
        "CREATE TABLE big (id bigint NOT NULL, name text, created timestamptz, amount numeric(12,2))",
    )
    execute(target_dsn, "CREATE INDEX big_id ON big (id)")


def _start(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "zdtp_worker", "full", *args],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=fh,
        )


def _starts(logs: list[Path]) -> int:
    return sum(p.read_text().count('"event": "chunk_start"') for p in logs if p.exists())


def _in_chunk(log: Path) -> bool:
    text = log.read_text() if log.exists() else ""
    return text.count('"event": "chunk_start"') > text.count('"event": "chunk_done"')


def _assert_equal(source_dsn: str, target_dsn: str, chunks: int, kills: int, logs: list[Path]) -> None:
    assert duplicates(target_dsn, "big", "id") == 0, "a chunk was committed twice"
    assert fingerprint(source_dsn, "big") == fingerprint(target_dsn, "big")
    assert scalar(target_dsn, "SELECT count(*) FROM zdtp.full_chunks") == chunks
    starts = _starts(logs)
    print(f"chunks={chunks} kills={kills} chunk_starts={starts} (redone={starts - chunks})")
    assert chunks <= starts <= chunks + kills, (starts, chunks, kills)


def test_kill9_single_worker_resumes(source_dsn: str, target_dsn: str, tmp_path: Path, seed: int) -> None:
    _fill(source_dsn)
    _target_without_key(target_dsn)
    rng = random.Random(seed)
    env = worker_env(spec_dict(["big"], run_id="chaos", chunk_rows=CHUNK_ROWS), source_dsn, target_dsn)
    kills, logs = 0, []
    for attempt in range(40):
        log = tmp_path / f"run{attempt}.log"
        logs.append(log)
        proc = _start(env, log)
        if kills >= KILLS:
            assert proc.wait(timeout=300) == 0, log.read_text()[-2000:]
            break
        # Kill once the run is copying (after its first chunk_start), at a random moment.
        deadline = time.monotonic() + 60
        while proc.poll() is None and '"chunk_start"' not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.6))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        elif proc.returncode == 0:
            break
        else:  # pragma: no cover - diagnostic
            pytest.fail(log.read_text()[-2000:])
    assert kills >= KILLS
    progress = [
        line for log in logs for line in log.read_text().splitlines() if '"event": "progress"' in line
    ]
    assert progress and all(f in progress[-1] for f in ('"rows_per_s"', '"pct"', '"eta_s"', '"table"'))
    chunks = int(scalar(target_dsn, "SELECT jsonb_array_length(chunks) FROM zdtp.full_plans"))
    _assert_equal(source_dsn, target_dsn, chunks, kills, logs)


def test_kill9_three_queue_workers(source_dsn: str, target_dsn: str, tmp_path: Path, seed: int) -> None:
    _fill(source_dsn)
    _target_without_key(target_dsn)
    spec = make_spec(["big"], run_id="chaosq", chunk_rows=CHUNK_ROWS, queue="q", lease_seconds=1.5)
    chunks = enqueue_chunks(spec, source_dsn=source_dsn, target_dsn=target_dsn)
    worker_spec = spec_dict([], run_id="chaosq", queue="q", lease_seconds=1.5)
    env = worker_env(worker_spec, source_dsn, target_dsn)
    rng = random.Random(seed)
    logs: list[Path] = []
    procs: list[subprocess.Popen[bytes]] = []
    for i in range(3):
        logs.append(tmp_path / f"w{i}-0.log")
        procs.append(_start(env, logs[-1]))
    current = list(logs)
    kills = 0
    deadline = time.monotonic() + 240
    while kills < KILLS and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.05, 0.5))
        if all(p.poll() is not None for p in procs):
            break
        # Kill a worker in the middle of a chunk (started, not yet done), chosen at random.
        busy = [i for i, p in enumerate(procs) if p.poll() is None and _in_chunk(current[i])]
        if not busy:
            continue
        victim = rng.choice(busy)
        procs[victim].send_signal(signal.SIGKILL)
        procs[victim].wait()
        kills += 1
        logs.append(tmp_path / f"w{victim}-{kills}.log")
        current[victim] = logs[-1]
        procs[victim] = _start(env, logs[-1])
    for proc in procs:
        assert proc.wait(timeout=240) == 0
    assert kills >= KILLS
    assert scalar(target_dsn, "SELECT count(*) FROM zdtp.work_queue WHERE state <> 'done'") == 0
    _assert_equal(source_dsn, target_dsn, chunks, kills, logs)
