"""Running real queue workers (``python -m zdtp_worker full``) against a backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.integration.worker_full.helpers import REPO, worker_env

Backend = tuple[str, "str | None"]


def queue_env(spec: dict[str, Any], source_dsn: str, target_dsn: str, backend: Backend) -> dict[str, str]:
    env = worker_env(spec, source_dsn, target_dsn)
    if backend[1]:
        env["ZDTP_QUEUE_DSN"] = backend[1]
    return env


def run_queue_worker(
    env: dict[str, str], *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zdtp_worker", "full", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def start_queue_worker(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "zdtp_worker", "full", *args],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=fh,
        )


def expire_leases(backend: Backend, target_dsn: str, queue: str) -> None:
    """Make every live lease of ``queue`` run out now (what the clock does to a dead worker's
    lease), so a test need not sleep through it."""
    if backend[0] == "postgres":
        import psycopg

        with psycopg.connect(target_dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE zdtp.work_queue SET lease_expires = now() - interval '1 s' "
                "WHERE queue = %s AND state = 'leased'",
                (queue,),
            )
        return
    import redis

    with redis.Redis.from_url(backend[1] or "", decode_responses=True) as client:
        key = f"zdtp:queue:{{{queue}}}:leased"
        for member in client.zrange(key, 0, -1):
            client.zadd(key, {member: 0})
