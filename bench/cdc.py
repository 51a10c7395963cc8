"""CDC benchmark: sustained apply throughput and end-to-end latency, next to raw pg_recvlogical.

Usage: ``.venv/bin/python bench/cdc.py [--changes 500000] [--rate 10000] [--seconds 20]``

Runs against the dev server (``devtools.postgres.ensure_server(Path('.zdtp/pg'))``), in fresh
source/target databases on the same machine (source, target, worker and generator share the CPUs).

1. Backlog: with the worker's slot (and a second slot for ``pg_recvlogical``) in place, write
   ``--changes`` changes (inserts in 1000-row transactions, then updates of rows inserted long
   before, so batches cannot compact them away). Then
   - ``pg_recvlogical`` reads the same backlog (pgoutput, same publication) to /dev/null: the raw
     read rate of the server + protocol, no decoding, no apply;
   - the worker (``python -m zdtp_worker incremental``, a subprocess) drains it: changes/s from
     the moment it streams until its ``zdtp_cdc_changes_applied_total`` reaches the total.
2. Latency: with the worker caught up, a paced generator inserts at ``--rate`` changes/s (100-row
   transactions every 10 ms) for ``--seconds``. Each row carries the source ``clock_timestamp()``;
   the target table has an extra ``applied_at timestamptz DEFAULT clock_timestamp()`` column, so
   latency = applied_at - created_at, per row, same server clock. Reports p50/p95/p99/max.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devtools.postgres import ensure_server, pg_bin_dir, stop_server  # noqa: E402
from zdtp_worker.contract.spec import TableName, WorkerSpec  # noqa: E402
from zdtp_worker.control import stream_setup as cdc_source  # noqa: E402
from zdtp_worker.control.names import publication_name, slot_name  # noqa: E402

DDL = "CREATE TABLE ev (id bigint PRIMARY KEY, k int NOT NULL, v text, created_at timestamptz NOT NULL)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


def wait_metric(port: int, name: str, at_least: float, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if metric(port, name) >= at_least:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{name} did not reach {at_least} in {timeout}s")


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (and its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_pids(admin_dsn: str, *, slot: str, target_db: str) -> dict[str, int]:
    with psycopg.connect(admin_dsn) as conn:
        walsender = conn.execute(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        target = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name LIKE 'zdtp-cdc%%'",
            (target_db,),
        ).fetchone()
    pids = {}
    if walsender and walsender[0]:
        pids["walsender"] = int(walsender[0])
    if target:
        pids["target_backend"] = int(target[0])
    return pids


def generate_backlog(dsn: str, changes: int) -> int:
    inserts = changes * 3 // 5
    updates = changes - inserts
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(1, inserts + 1, 1000):
            conn.execute(
                "INSERT INTO ev SELECT g, g %% 1000, md5(g::text), clock_timestamp()"
                " FROM generate_series(%s::bigint, %s::bigint) g",
                (start, min(start + 999, inserts)),
            )
        for start in range(1, updates + 1, 1000):
            conn.execute(
                "UPDATE ev SET k = k + 1, v = 'u' || id WHERE id BETWEEN %s AND %s",
                (start, min(start + 999, updates)),
            )
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return inserts + updates


def recvlogical(dsn: str, slot: str, publication: str, endpos: str) -> float:
    started = time.monotonic()
    subprocess.run(
        [
            str(pg_bin_dir() / "pg_recvlogical"),
            "-d",
            dsn,
            "--slot",
            slot,
            "--start",
            "--no-loop",
            "-o",
            "proto_version=1",
            "-o",
            f"publication_names={publication}",
            "--endpos",
            endpos,
            "-f",
            "/dev/null",
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return time.monotonic() - started


def paced_inserts(dsn: str, *, first_id: int, rate: int, seconds: float) -> tuple[int, float]:
    per_txn = 100
    interval = per_txn / rate
    n = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.monotonic()
        next_at = started
        while time.monotonic() - started < seconds:
            conn.execute(
                "INSERT INTO ev SELECT g, 0, 'lat', clock_timestamp()"
                " FROM generate_series(%s::bigint, %s::bigint) g",
                (first_id + n, first_id + n + per_txn - 1),
            )
            n += per_txn
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        elapsed = time.monotonic() - started
    return n, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--changes", type=int, default=500_000)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch-max-changes", type=int, default=10_000)
    parser.add_argument("--profile", help="run the worker under cProfile, write stats here")
    parser.add_argument("--verbose", action="store_true", help="print apply rate and lag each second")
    parser.add_argument(
        "--server",
        choices=["dev", "private"],
        default="dev",
        help="the shared dev server (.zdtp/pg), or a private one in .zdtp/pg-cdc-bench (stopped after)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    args = parser.parse_args()

    private_dir = REPO / ".zdtp" / "pg-cdc-bench"
    if args.server == "private":
        # Logical decoding reads the whole cluster's WAL: on the shared dev server, other sessions'
        # bulk loads delay this stream too. A private server isolates WAL (not CPU).
        server = ensure_server(private_dir, port=free_port())
    else:
        server = ensure_server(REPO / ".zdtp" / "pg")
    tag = uuid.uuid4().hex[:8]
    src_db, tgt_db = f"bench_cdc_src_{tag}", f"bench_cdc_tgt_{tag}"
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        version = admin.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        admin.execute(f"CREATE DATABASE {src_db}")
        admin.execute(f"CREATE DATABASE {tgt_db}")
    src_dsn, tgt_dsn = server.dsn(src_db), server.dsn(tgt_db)
    port = free_port()
    spec = WorkerSpec.model_validate(
        {
            "mode": "incremental",
            "task": f"bench-{tag}",
            "run_id": "bench",
            "tables": [{"source": "ev"}],
            "incremental": {"health_port": port, "batch_max_changes": args.batch_max_changes},
        }
    )
    slot, pub, raw_slot = slot_name(spec), publication_name(spec), f"bench_raw_{tag}"
    proc: subprocess.Popen[bytes] | None = None
    results: dict[str, object] = {}
    try:
        with psycopg.connect(src_dsn, autocommit=True) as src:
            src.execute(DDL)
            cdc_source.ensure_publication(src, pub, [TableName.model_validate("ev")])
            cdc_source.ensure_slot(src, slot)
            src.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (raw_slot,))
        with psycopg.connect(tgt_dsn, autocommit=True) as tgt:
            tgt.execute(DDL.replace(")", ", applied_at timestamptz DEFAULT clock_timestamp())", 1))

        t0 = time.monotonic()
        total = generate_backlog(src_dsn, args.changes)
        with psycopg.connect(src_dsn) as src:
            endpos = src.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
        print(f"backlog: {total} changes written in {time.monotonic() - t0:.1f}s", flush=True)

        raw_seconds = recvlogical(src_dsn, raw_slot, pub, endpos)
        results["recvlogical_changes_per_s"] = round(total / raw_seconds)
        print(f"pg_recvlogical: {total} changes in {raw_seconds:.2f}s", flush=True)

        env = dict(
            os.environ,
            ZDTP_WORKER_SPEC=spec.to_json(),
            ZDTP_SOURCE_DSN=src_dsn,
            ZDTP_TARGET_DSN=tgt_dsn,
            PYTHONPATH=str(REPO),
            ZDTP_LOG_LEVEL="WARNING",
        )
        profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
        proc = subprocess.Popen(
            [sys.executable, *profile, "-m", "zdtp_worker", "incremental"], env=env, cwd=REPO
        )
        streaming = wait_metric(port, "zdtp_cdc_streaming", 1, timeout=60)
        pids = {"worker": proc.pid, **backend_pids(server.dsn(), slot=slot, target_db=tgt_db)}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        done = wait_metric(port, "zdtp_cdc_changes_applied_total", total, timeout=600)
        apply_seconds = done - streaming
        # Where the CPU went while draining: worker process, its walsender, its target backend.
        results["drain_cpu_seconds"] = {
            name: round(cpu_seconds(pid) - cpu_before[name], 2) for name, pid in pids.items()
        }
        results["apply_changes_per_s"] = round(total / apply_seconds)
        results["batches"] = int(metric(port, "zdtp_cdc_batches_total"))
        print(f"worker: {total} changes applied in {apply_seconds:.2f}s", flush=True)

        watch = threading.Event()

        def watcher() -> None:
            # Once a second: applied changes and lag, to see whether the worker keeps up.
            last = metric(port, "zdtp_cdc_changes_applied_total")
            while not watch.wait(1.0):
                now = metric(port, "zdtp_cdc_changes_applied_total")
                lag = metric(port, "zdtp_cdc_lag_seconds")
                print(f"  applied {now - last:8.0f}/s  lag {lag:6.2f}s", flush=True)
                last = now

        watching = threading.Thread(target=watcher, daemon=True)
        if args.verbose:
            watching.start()
        n, elapsed = paced_inserts(src_dsn, first_id=10_000_000, rate=args.rate, seconds=args.seconds)
        watch.set()
        wait_metric(port, "zdtp_cdc_changes_applied_total", total + n, timeout=120)
        with psycopg.connect(tgt_dsn) as tgt:
            row = tgt.execute(
                "SELECT count(*), max(lat),"
                " percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY lat)"
                " FROM (SELECT extract(epoch FROM applied_at - created_at) * 1000 AS lat FROM ev"
                " WHERE id >= 10000000) s"
            ).fetchone()
        assert row is not None and row[0] == n
        p50, p95, p99 = row[2]
        results.update(
            offered_changes_per_s=round(n / elapsed),
            latency_ms_p50=round(p50, 1),
            latency_ms_p95=round(p95, 1),
            latency_ms_p99=round(p99, 1),
            latency_ms_max=round(float(row[1]), 1),
            latency_changes=n,
        )
        results.update(
            server=args.server,
            total_backlog_changes=total,
            postgres=version,
            cpus=os.cpu_count(),
            machine=platform.platform(),
            python=platform.python_version(),
            date=time.strftime("%Y-%m-%d"),
        )
        print(json.dumps(results, indent=2))
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        if not args.keep:
            with psycopg.connect(server.dsn(), autocommit=True) as admin:
                for s in (slot, raw_slot):
                    admin.execute(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                        " WHERE slot_name = %s",
                        (s,),
                    )
                admin.execute(f"DROP DATABASE IF EXISTS {src_db} WITH (FORCE)")
                admin.execute(f"DROP DATABASE IF EXISTS {tgt_db} WITH (FORCE)")
            if args.server == "private":
                # Fresh each run: a reused data dir would insist on its first (maybe taken) port.
                stop_server(private_dir)
                shutil.rmtree(private_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
