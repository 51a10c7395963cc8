"""Benchmark: ``zdtp-worker full`` against a ``psql COPY binary | psql COPY`` pipe and against
``pgcopydb clone``, same server, same run.

Both copy the same source table (default 5M rows of bigint, text, timestamptz, numeric, int) into
a fresh target table with the same primary key. The worker runs as a real subprocess
(``python -m zdtp_worker full``: 1 worker, default chunking, checkpoints on, verify=count), so its
figure includes interpreter start-up, planning and per-chunk commits. Runs are interleaved
(psql, pgcopydb, zdtp, psql, ...) to share the machine's noise; every run gets a fresh target
database. Prints each run and ``ratio = zdtp rows/s / reference rows/s`` over the medians.

``pgcopydb clone`` (Debian's package, run with the server's own ``pg_dump``/``pg_restore`` first on
PATH) copies the whole source database: schema, data, then the primary key, then ``VACUUM
ANALYZE`` — like zdtp it creates the table and builds the key after the load; unlike zdtp it also
vacuums and has no checkpoints. ``--no-pgcopydb`` leaves it out.

Usage: ``.venv/bin/python bench/full_sync.py [--rows 5000000] [--runs 3] [--chunk-rows 250000]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devtools.postgres import ensure_server, pg_bin_dir  # noqa: E402

DDL = (
    "CREATE TABLE public.bench (id bigint PRIMARY KEY, name text NOT NULL, created timestamptz NOT NULL, "
    "amount numeric(12,2), qty integer)"
)
FILL = (
    "INSERT INTO public.bench SELECT g, 'customer ' || md5(g::text), "
    "timestamptz '2024-01-01' + g * interval '1 second', (g %% 100000) / 100.0, g %% 1000 "
    "FROM generate_series(1, %s) g"
)


def _db(admin: str, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def _drop(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def psql_pipe(src_dsn: str, tgt_dsn: str) -> float:
    with psycopg.connect(tgt_dsn, autocommit=True) as conn:
        conn.execute(DDL)
    psql = str(pg_bin_dir() / "psql")
    env = {**os.environ, "PGPASSWORD": urlsplit(src_dsn).password or ""}
    t0 = time.perf_counter()
    out = subprocess.Popen(
        [psql, "-X", "-q", "-d", src_dsn, "-c", "COPY public.bench TO STDOUT (FORMAT binary)"],
        stdout=subprocess.PIPE,
        env=env,
    )
    inp = subprocess.run(
        [psql, "-X", "-q", "-d", tgt_dsn, "-c", "COPY public.bench FROM STDIN (FORMAT binary)"],
        stdin=out.stdout,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.stdout is not None
    out.stdout.close()
    out.wait()
    elapsed = time.perf_counter() - t0
    if out.returncode or inp.returncode:
        raise SystemExit(f"psql pipe failed: {inp.stderr.strip()}")
    return elapsed


def pgcopydb_clone(src_dsn: str, tgt_dsn: str) -> float:
    """``pgcopydb clone`` of the source database into the (empty) target database."""
    env = {**os.environ, "PATH": f"{pg_bin_dir()}:{os.environ.get('PATH', '')}"}
    with tempfile.TemporaryDirectory(prefix="zdtp-bench-pgcopydb-") as work:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                *("pgcopydb", "clone", "--source", src_dsn, "--target", tgt_dsn),
                *("--dir", f"{work}/clone", "--no-owner", "--no-acl", "--skip-large-objects"),
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"pgcopydb failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return elapsed


def _count(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM public.bench").fetchone()
    return int(row[0]) if row else 0


def zdtp_worker(src_dsn: str, tgt_dsn: str, *, chunk_rows: int, streams: int = 1) -> tuple[float, dict]:
    spec = {
        "mode": "full",
        "task": "bench",
        "run_id": f"bench-{uuid.uuid4().hex[:8]}",
        "tables": [{"source": "public.bench"}],
        "full": {
            "chunk_rows": chunk_rows,
            "verify": "count",
            "progress_interval_seconds": 60,
            "streams": streams,
        },
    }
    env = {
        **os.environ,
        "ZDTP_WORKER_SPEC": json.dumps(spec),
        "ZDTP_SOURCE_DSN": src_dsn,
        "ZDTP_TARGET_DSN": tgt_dsn,
        "ZDTP_TERMINATION_LOG": "/dev/null",
    }
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "zdtp_worker", "full"], env=env, capture_output=True, text=True, cwd=REPO
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"zdtp-worker failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return elapsed, json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--chunk-rows", type=int, default=250_000)
    ap.add_argument(
        "--streams", type=int, nargs="+", default=[1], help="zdtp variants: pipelines inside the one worker"
    )
    ap.add_argument("--no-pgcopydb", action="store_true", help="leave the pgcopydb reference out")
    args = ap.parse_args()
    with_pgcopydb = not args.no_pgcopydb
    if with_pgcopydb and shutil.which("pgcopydb") is None:
        raise SystemExit("pgcopydb is not installed (dev/system-packages.sh), or pass --no-pgcopydb")

    server = ensure_server(REPO / ".zdtp" / "pg")
    admin = server.dsn()
    src = _db(admin, "bench_src")
    try:
        src_dsn = server.dsn(src)
        t0 = time.perf_counter()
        with psycopg.connect(src_dsn, autocommit=True) as conn:
            conn.execute(DDL)
            conn.execute(FILL % int(args.rows))
            conn.execute("VACUUM ANALYZE public.bench")
            size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('public.bench'))").fetchone()
        loaded = time.perf_counter() - t0
        print(f"load average before the runs: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"source: {args.rows:,} rows, {size[0] if size else '?'}, loaded in {loaded:.1f}s")
        psql_rates: list[float] = []
        pgcopydb_rates: list[float] = []
        zdtp_rates: dict[int, list[float]] = {s: [] for s in args.streams}
        for i in range(args.runs):
            tgt = _db(admin, "bench_psql")
            try:
                secs = psql_pipe(src_dsn, server.dsn(tgt))
            finally:
                _drop(admin, tgt)
            psql_rates.append(args.rows / secs)
            print(f"run {i + 1}: psql pipe   {secs:6.2f}s  {args.rows / secs:>10,.0f} rows/s", flush=True)
            if with_pgcopydb:
                tgt = _db(admin, "bench_pgcopydb")
                try:
                    secs = pgcopydb_clone(src_dsn, server.dsn(tgt))
                    copied = _count(server.dsn(tgt))
                finally:
                    _drop(admin, tgt)
                assert copied == args.rows, copied
                pgcopydb_rates.append(args.rows / secs)
                print(f"run {i + 1}: pgcopydb    {secs:6.2f}s  {args.rows / secs:>10,.0f} rows/s", flush=True)
            for streams in args.streams:
                tgt = _db(admin, "bench_zdtp")
                try:
                    secs, result = zdtp_worker(
                        src_dsn, server.dsn(tgt), chunk_rows=args.chunk_rows, streams=streams
                    )
                finally:
                    _drop(admin, tgt)
                assert result["rows"] == args.rows, result
                zdtp_rates[streams].append(args.rows / secs)
                print(
                    f"run {i + 1}: zdtp s={streams}   {secs:6.2f}s  {args.rows / secs:>10,.0f} rows/s"
                    f"  ({result['chunks']} chunks, worker-internal {result['seconds']:.2f}s)",
                    flush=True,
                )
        p = statistics.median(psql_rates)
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
        print(f"load average after the runs: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"median psql pipe: {p:,.0f} rows/s")
        c = statistics.median(pgcopydb_rates) if pgcopydb_rates else None
        if c:
            print(f"median pgcopydb clone: {c:,.0f} rows/s")
        for streams, rates in zdtp_rates.items():
            z = statistics.median(rates)
            print(f"median zdtp-worker (1 worker, streams={streams}): {z:,.0f} rows/s")
            print(f"ratio (streams={streams}) = zdtp rows/s / psql-pipe rows/s = {z / p:.2f}")
            if c:
                print(f"ratio (streams={streams}) = zdtp rows/s / pgcopydb rows/s = {z / c:.2f}")
    finally:
        _drop(admin, src)


if __name__ == "__main__":
    main()
