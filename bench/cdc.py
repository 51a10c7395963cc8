"""CDC benchmark: zdtp's stream against PostgreSQL's own logical replication and raw pg_recvlogical.

Usage: ``.venv/bin/python bench/cdc.py [--runs 3] [--changes 500000] [--rate 10000] [--seconds 20]``

Each run uses fresh databases on one server (``--server dev``: the shared ``.zdtp/pg``;
``--server private``: a throwaway one): a source, a target for zdtp and a target for the native
subscription, both targets with fresh ``ev`` tables. Source, targets, worker and generator share
the machine's CPUs.

1. Backlog. Three slots exist before any write: zdtp's, one for ``pg_recvlogical`` and one for the
   native subscription (created with ``pg_create_logical_replication_slot``: a subscription to the
   same cluster hangs if ``CREATE SUBSCRIPTION`` creates its own slot, so it is created disabled with
   ``create_slot = false, copy_data = false``). Then ``--changes`` changes are written (inserts in
   1000-row transactions, then updates of rows inserted long before, so batches cannot compact them
   away), and a last one-row transaction, the end marker. The three consumers then drain the same
   backlog one after the other, in an order that rotates from run to run:
   - ``pg_recvlogical`` (pgoutput, same publication) to /dev/null: the server's raw read rate, no
     apply;
   - zdtp (``python -m zdtp_worker incremental``, a subprocess): from the moment it streams until
     its ``zdtp_cdc_changes_applied_total`` reaches the total (start-up reported separately);
   - the native subscription (a C apply worker): from ``ALTER SUBSCRIPTION … ENABLE`` until the end
     marker is on its target (polled by key every 20 ms); also from the moment its apply worker
     first reports a received LSN, the like-for-like figure to zdtp's.
   Each consumer's process and its walsender are measured in CPU seconds (from /proc).
2. Latency at a fixed ``--rate`` (after all drains, one consumer at a time): a paced generator
   inserts 100-row transactions for ``--seconds``. Each row carries the source
   ``clock_timestamp()``; both targets' ``ev`` have an extra ``applied_at DEFAULT
   clock_timestamp()`` column (the native apply worker fills defaults of columns the publisher
   lacks too), so latency = applied_at - created_at, per row, same server clock.

Prints each run, the medians and the ratios (zdtp ÷ native, zdtp ÷ pg_recvlogical); ``--out``
writes everything as JSON (``bench/chart.py`` draws the ratios from it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devtools.ports import free_port  # noqa: E402
from devtools.postgres import PostgresServer, ensure_server, pg_bin_dir, stop_server  # noqa: E402
from zdtp_worker.contract.spec import TableName, WorkerSpec  # noqa: E402
from zdtp_worker.control import stream_setup as cdc_source  # noqa: E402
from zdtp_worker.control.names import publication_name, slot_name  # noqa: E402

DDL = "CREATE TABLE ev (id bigint PRIMARY KEY, k int NOT NULL, v text, created_at timestamptz NOT NULL)"
TARGET_DDL = DDL.replace(")", ", applied_at timestamptz DEFAULT clock_timestamp())", 1)
MARKER_ID = -1
POLL = 0.02
CONSUMERS = ("recvlogical", "zdtp", "native")


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
        except (OSError, KeyError):
            pass
        time.sleep(POLL)
    raise TimeoutError(f"{name} did not reach {at_least} in {timeout}s")


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (and its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):  # gone already
            out[name] = cpu_seconds(pid)
    return out


def cpu_delta(before: dict[str, float], pids: dict[str, int]) -> dict[str, float]:
    after = cpu_snapshot(pids)
    return {name: round(after[name] - before[name], 2) for name in before if name in after}


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def slot_pid(admin_dsn: str, slot: str) -> int | None:
    with psycopg.connect(admin_dsn) as conn:
        row = conn.execute(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
    return int(row[0]) if row and row[0] else None


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
        # The end marker: the native target has applied everything once this row is there.
        conn.execute("INSERT INTO ev VALUES (%s, 0, 'end', clock_timestamp())", (MARKER_ID,))
    return inserts + updates + 1


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


def wait_rows(dsn: str, *, first_id: int, n: int, timeout: float) -> None:
    """Until the target has the ``n`` rows of a paced phase (the last id is enough: apply is in
    commit order)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute("SELECT 1 FROM ev WHERE id = %s", (first_id + n - 1,)).fetchone():
                return
            time.sleep(POLL)
    raise TimeoutError(f"rows up to id {first_id + n - 1} not applied in {timeout}s")


def latency(dsn: str, *, first_id: int, n: int) -> dict[str, float]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), max(lat),"
            " percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY lat)"
            " FROM (SELECT extract(epoch FROM applied_at - created_at) * 1000 AS lat FROM ev"
            " WHERE id BETWEEN %s AND %s) s",
            (first_id, first_id + n - 1),
        ).fetchone()
    assert row is not None and row[0] == n, (row, n)
    p50, p95, p99 = row[2]
    return {
        "p50_ms": round(p50, 1),
        "p95_ms": round(p95, 1),
        "p99_ms": round(p99, 1),
        "max_ms": round(float(row[1]), 1),
        "changes": n,
    }


def recvlogical(dsn: str, slot: str, publication: str, endpos: str) -> float:
    started = time.monotonic()
    subprocess.run(
        [
            str(pg_bin_dir() / "pg_recvlogical"),
            *("-d", dsn, "--slot", slot, "--start", "--no-loop"),
            *("-o", "proto_version=1", "-o", f"publication_names={publication}"),
            *("--endpos", endpos, "-f", "/dev/null"),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return time.monotonic() - started


def start_spy(pid: int, output: str) -> subprocess.Popen[bytes]:
    """py-spy on ``pid``: every thread, idle (waiting on the server) included, so the collapsed
    stacks give wall time per call site and thread."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            *("record", "--pid", str(pid), "--format", "raw", "--output", output),
            *("--threads", "--idle", "--rate", "200", "--nonblocking"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_spy(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)


class ZdtpSide:
    """One zdtp worker consumer: its checkout, spec, slot, target database and process."""

    def __init__(self, repo: Path, task: str, db: str, batch_max_changes: int) -> None:
        self.repo, self.db, self.port = repo, db, free_port()
        self.spec = WorkerSpec.model_validate(
            {
                "mode": "incremental",
                "task": task,
                "run_id": "bench",
                "tables": [{"source": "ev"}],
                "incremental": {"health_port": self.port, "batch_max_changes": batch_max_changes},
            }
        )
        self.slot, self.pub = slot_name(self.spec), publication_name(self.spec)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, src_dsn: str, tgt_dsn: str, profile: str | None = None) -> float:
        env = dict(
            os.environ,
            ZDTP_WORKER_SPEC=self.spec.to_json(),
            ZDTP_SOURCE_DSN=src_dsn,
            ZDTP_TARGET_DSN=tgt_dsn,
            PYTHONPATH=str(self.repo),
            ZDTP_LOG_LEVEL="WARNING",
        )
        prof = ["-m", "cProfile", "-o", profile] if profile else []
        launched = time.monotonic()
        self.proc = subprocess.Popen(  # its stdout is the one-line result: not needed here
            [sys.executable, *prof, "-m", "zdtp_worker", "incremental"],
            env=env,
            cwd=self.repo,
            stdout=subprocess.DEVNULL,
        )
        return launched

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        self.proc = None


@dataclass
class Run:
    """One run's databases, slots and consumers."""

    server: PostgresServer
    tag: str
    changes: int
    batch_max_changes: int
    base_repo: Path | None = None  # a second checkout whose worker runs as consumer "zdtp_base"

    def __post_init__(self) -> None:
        t = self.tag
        self.src_db, self.native_db = f"bcdc_src_{t}", f"bcdc_native_{t}"
        self.zdtp = ZdtpSide(REPO, f"bench-{t}", f"bcdc_zdtp_{t}", self.batch_max_changes)
        self.sides = {"zdtp": self.zdtp}
        if self.base_repo is not None:
            self.sides["zdtp_base"] = ZdtpSide(
                self.base_repo, f"bench-base-{t}", f"bcdc_base_{t}", self.batch_max_changes
            )
        self.pub = self.zdtp.pub  # every consumer reads the same publication
        self.raw_slot, self.native_slot, self.sub = f"bench_raw_{t}", f"bench_native_{t}", f"bench_sub_{t}"
        self.total = 0
        self.endpos = ""

    @property
    def admin(self) -> str:
        return self.server.dsn()

    def setup(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as admin:
            for db in (self.src_db, self.native_db, *(z.db for z in self.sides.values())):
                admin.execute(f"CREATE DATABASE {db}")
        with psycopg.connect(self.server.dsn(self.src_db), autocommit=True) as src:
            src.execute(DDL)
            cdc_source.ensure_publication(src, self.pub, [TableName.model_validate("ev")])
            for z in self.sides.values():
                # Before the writes, publication included: decoding sees the catalog as of each change.
                cdc_source.ensure_publication(src, z.pub, [TableName.model_validate("ev")])
                cdc_source.ensure_slot(src, z.slot)
            for s in (self.raw_slot, self.native_slot):
                src.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (s,))
        for db in (self.native_db, *(z.db for z in self.sides.values())):
            with psycopg.connect(self.server.dsn(db), autocommit=True) as tgt:
                tgt.execute(TARGET_DDL)
        with psycopg.connect(self.server.dsn(self.native_db), autocommit=True) as tgt:
            # Same cluster: the slot exists already (create_slot = false), or CREATE would hang.
            tgt.execute(
                f"CREATE SUBSCRIPTION {self.sub} CONNECTION '{self.server.dsn(self.src_db)}'"
                f" PUBLICATION {self.pub} WITH (create_slot = false, slot_name = '{self.native_slot}',"
                " copy_data = false, enabled = false)"
            )

    def backlog(self) -> float:
        t0 = time.monotonic()
        self.total = generate_backlog(self.server.dsn(self.src_db), self.changes)
        with psycopg.connect(self.server.dsn(self.src_db)) as src:
            self.endpos = src.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
        return time.monotonic() - t0

    # -- consumers --------------------------------------------------------------------------
    def drain_recvlogical(self) -> dict[str, object]:
        secs = recvlogical(self.server.dsn(self.src_db), self.raw_slot, self.pub, self.endpos)
        return {"seconds": round(secs, 2), "changes_per_s": round(self.total / secs)}

    def drain_zdtp(
        self, name: str = "zdtp", profile: str | None = None, py_spy: str | None = None
    ) -> dict[str, object]:
        z = self.sides[name]
        launched = z.start(self.server.dsn(self.src_db), self.server.dsn(z.db), profile)
        assert z.proc is not None
        try:
            streaming = wait_metric(z.port, "zdtp_cdc_streaming", 1, timeout=120)
            pids = {"worker": z.proc.pid}
            if (ws := slot_pid(self.admin, z.slot)) is not None:
                pids["walsender"] = ws
            with psycopg.connect(self.admin) as conn:
                row = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s"
                    " AND application_name LIKE 'zdtp-cdc-%%'"
                    " AND application_name NOT LIKE 'zdtp-cdc-watch%%'",
                    (z.db,),
                ).fetchone()
            if row:
                pids["target_backend"] = int(row[0])
            spy = start_spy(z.proc.pid, py_spy) if py_spy else None
            before = cpu_snapshot(pids)
            done = wait_metric(z.port, "zdtp_cdc_changes_applied_total", self.total, timeout=900)
            cpu = cpu_delta(before, pids)
            stop_spy(spy)
            batches = int(metric(z.port, "zdtp_cdc_batches_total"))
        finally:
            z.stop()
        secs = done - streaming
        return {
            "seconds": round(secs, 2),
            "changes_per_s": round(self.total / secs),
            "startup_seconds": round(streaming - launched, 2),
            "changes_per_s_incl_startup": round(self.total / (done - launched)),
            "cpu_seconds": cpu,
            "batches": batches,
        }

    def _subscription(self, enabled: bool) -> None:
        with psycopg.connect(self.server.dsn(self.native_db), autocommit=True) as tgt:
            tgt.execute(f"ALTER SUBSCRIPTION {self.sub} {'ENABLE' if enabled else 'DISABLE'}")
        if not enabled:  # wait until its apply worker has gone (the slot is free again)
            deadline = time.monotonic() + 30
            while slot_pid(self.admin, self.native_slot) and time.monotonic() < deadline:
                time.sleep(0.05)

    def drain_native(self) -> dict[str, object]:
        tgt_dsn = self.server.dsn(self.native_db)
        with psycopg.connect(tgt_dsn, autocommit=True) as tgt:
            enabled = time.monotonic()
            tgt.execute(f"ALTER SUBSCRIPTION {self.sub} ENABLE")
            streaming = None
            pids: dict[str, int] = {}
            before: dict[str, float] = {}
            deadline = enabled + 900
            while time.monotonic() < deadline:
                if streaming is None:
                    row = tgt.execute(
                        "SELECT pid, received_lsn IS NOT NULL FROM pg_stat_subscription"
                        " WHERE subname = %s AND relid IS NULL",
                        (self.sub,),
                    ).fetchone()
                    if row and row[0] and row[1]:
                        streaming = time.monotonic()
                        pids = {"apply_worker": int(row[0])}
                        if (ws := slot_pid(self.admin, self.native_slot)) is not None:
                            pids["walsender"] = ws
                        before = cpu_snapshot(pids)
                if tgt.execute("SELECT 1 FROM ev WHERE id = %s", (MARKER_ID,)).fetchone():
                    done = time.monotonic()
                    break
                time.sleep(POLL)
            else:
                raise TimeoutError("the native subscription did not apply the backlog in 900 s")
        cpu = cpu_delta(before, pids)
        self._subscription(False)
        start = streaming or enabled
        with psycopg.connect(tgt_dsn) as tgt:
            count = tgt.execute("SELECT count(*) FROM ev").fetchone()[0]  # type: ignore[index]
        assert count == self.changes * 3 // 5 + 1, count
        return {
            "seconds": round(done - start, 2),
            "changes_per_s": round(self.total / (done - start)),
            "startup_seconds": round(start - enabled, 2),
            "changes_per_s_incl_startup": round(self.total / (done - enabled)),
            "cpu_seconds": cpu,
        }

    # -- latency --------------------------------------------------------------------------
    def latency_zdtp(self, rate: int, seconds: float, py_spy: str | None = None) -> dict[str, object]:
        z = self.zdtp
        z.start(self.server.dsn(self.src_db), self.server.dsn(z.db))
        spy = None
        try:
            wait_metric(z.port, "zdtp_cdc_streaming", 1, timeout=120)
            # Warm up: a restarted slot first re-reads WAL from its restart point (and everything
            # the other consumers wrote since); one row through first, so the phase measures
            # steady state, as the native subscription's (which first catches up) does.
            with psycopg.connect(self.server.dsn(self.src_db), autocommit=True) as src:
                src.execute("INSERT INTO ev VALUES (9999999, 0, 'warm', clock_timestamp())")
            wait_rows(self.server.dsn(z.db), first_id=9_999_999, n=1, timeout=300)
            applied = metric(z.port, "zdtp_cdc_changes_applied_total")
            first = 10_000_000
            assert z.proc is not None
            spy = start_spy(z.proc.pid, py_spy) if py_spy else None
            n, elapsed = paced_inserts(
                self.server.dsn(self.src_db), first_id=first, rate=rate, seconds=seconds
            )
            wait_metric(z.port, "zdtp_cdc_changes_applied_total", applied + n, timeout=300)
        finally:
            stop_spy(spy)
            z.stop()
        return {"offered_per_s": round(n / elapsed), **latency(self.server.dsn(z.db), first_id=first, n=n)}

    def latency_native(self, rate: int, seconds: float, *, after: int) -> dict[str, object]:
        tgt_dsn = self.server.dsn(self.native_db)
        self._subscription(True)
        try:
            # First catch up with what zdtp's latency phase wrote (``after`` rows from id 10M).
            if after:
                wait_rows(tgt_dsn, first_id=10_000_000, n=after, timeout=300)
            first = 20_000_000
            n, elapsed = paced_inserts(
                self.server.dsn(self.src_db), first_id=first, rate=rate, seconds=seconds
            )
            wait_rows(tgt_dsn, first_id=first, n=n, timeout=300)
        finally:
            self._subscription(False)
        return {"offered_per_s": round(n / elapsed), **latency(tgt_dsn, first_id=first, n=n)}

    def cleanup(self) -> None:
        for z in self.sides.values():
            z.stop()
        with psycopg.connect(self.admin, autocommit=True) as admin:
            try:
                with psycopg.connect(self.server.dsn(self.native_db), autocommit=True) as tgt:
                    tgt.execute(f"ALTER SUBSCRIPTION {self.sub} DISABLE")
                    tgt.execute(f"ALTER SUBSCRIPTION {self.sub} SET (slot_name = NONE)")
                    tgt.execute(f"DROP SUBSCRIPTION {self.sub}")
            except psycopg.Error:
                pass
            for s in (self.raw_slot, self.native_slot, *(z.slot for z in self.sides.values())):
                for _ in range(50):
                    try:
                        admin.execute(
                            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                            " WHERE slot_name = %s",
                            (s,),
                        )
                        break
                    except psycopg.errors.ObjectInUse:
                        time.sleep(0.1)
            for db in (self.src_db, self.native_db, *(z.db for z in self.sides.values())):
                admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def median_of(runs: list[dict], consumer: str, field: str = "changes_per_s") -> float:
    return float(statistics.median(r["drain"][consumer][field] for r in runs))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--changes", type=int, default=500_000)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each latency phase (0: none)")
    parser.add_argument("--batch-max-changes", type=int, default=10_000)
    parser.add_argument("--profile", help="run the worker's backlog drain under cProfile, stats to PREFIX.N")
    parser.add_argument(
        "--py-spy",
        help="sample the worker's drain with py-spy (bench-only tool), collapsed stacks to PREFIX.N.txt",
    )
    parser.add_argument("--only", nargs="+", choices=CONSUMERS, default=list(CONSUMERS))
    parser.add_argument("--out", help="write all runs and the summary as JSON here")
    parser.add_argument(
        "--base-worker",
        help="another checkout (e.g. a git worktree of an older commit): its worker drains the same"
        " backlog too, as consumer zdtp_base, for a before/after comparison inside each run",
    )
    parser.add_argument(
        "--server",
        choices=["dev", "private", "pg15"],
        default="dev",
        help="the shared dev server (.zdtp/pg), a private one in .zdtp/pg-cdc-bench, or a private"
        " Debian PostgreSQL 15 (devtools.postgres15; the issue's figures came from PG 15); private"
        " servers are stopped after",
    )
    args = parser.parse_args()
    base_repo = Path(args.base_worker).resolve() if args.base_worker else None

    private_dir = REPO / ".zdtp" / "pg-cdc-bench"
    pg15 = None
    if args.server == "private":
        # Logical decoding reads the whole cluster's WAL: on the shared dev server, other sessions'
        # bulk loads delay these streams too. A private server isolates WAL (not CPU).
        server = ensure_server(private_dir, port=free_port())
    elif args.server == "pg15":
        from devtools.postgres15 import start_server

        server = pg15 = start_server()  # type: ignore[assignment]
    else:
        server = ensure_server(REPO / ".zdtp" / "pg")
    with psycopg.connect(server.dsn()) as admin:
        version = admin.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    runs: list[dict] = []
    try:
        for i in range(args.runs):
            run = Run(server, uuid.uuid4().hex[:8], args.changes, args.batch_max_changes, base_repo)
            record: dict = {
                "run": i + 1,
                "started": time.strftime("%H:%M:%S", time.gmtime()),
                "load1": [load1()],
            }
            try:
                run.setup()
                written = run.backlog()
                print(f"run {i + 1}: backlog of {run.total} changes written in {written:.1f}s", flush=True)
                # Rotate the order so no consumer always goes first (or last) in a run.
                consumers = [*CONSUMERS, "zdtp_base"] if base_repo else list(CONSUMERS)
                k = i % len(consumers)
                order = [c for c in consumers[k:] + consumers[:k] if c in args.only or c == "zdtp_base"]
                record["order"] = order
                record["drain"] = {}
                for consumer in order:
                    if consumer == "recvlogical":
                        res = run.drain_recvlogical()
                    elif consumer == "zdtp":
                        res = run.drain_zdtp(
                            "zdtp",
                            f"{args.profile}.{i + 1}" if args.profile else None,
                            f"{args.py_spy}.{i + 1}.txt" if args.py_spy else None,
                        )
                    elif consumer == "zdtp_base":
                        res = run.drain_zdtp("zdtp_base")
                    else:
                        res = run.drain_native()
                    record["drain"][consumer] = res
                    print(f"run {i + 1}: {consumer:<12} {json.dumps(res)}", flush=True)
                record["latency"] = {}
                zdtp_rows = 0
                if args.seconds > 0 and "zdtp" in args.only:
                    res = run.latency_zdtp(
                        args.rate, args.seconds, f"{args.py_spy}.{i + 1}.latency.txt" if args.py_spy else None
                    )
                    zdtp_rows = int(res["changes"])  # type: ignore[call-overload]
                    record["latency"]["zdtp"] = res
                    print(f"run {i + 1}: latency zdtp   {json.dumps(res)}", flush=True)
                if args.seconds > 0 and "native" in args.only:
                    res = run.latency_native(args.rate, args.seconds, after=zdtp_rows)
                    record["latency"]["native"] = res
                    print(f"run {i + 1}: latency native {json.dumps(res)}", flush=True)
            finally:
                run.cleanup()
            record["load1"].append(load1())
            runs.append(record)
    finally:
        if pg15 is not None:
            pg15.stop()
        if args.server == "private":
            # Fresh each time: a reused data dir would insist on its first (maybe taken) port.
            stop_server(private_dir)
            shutil.rmtree(private_dir, ignore_errors=True)

    summary: dict[str, object] = {}
    for consumer in [*args.only, *(["zdtp_base"] if base_repo else [])]:
        summary[f"median_{consumer}_changes_per_s"] = round(median_of(runs, consumer))
    if {"zdtp", "native"} <= set(args.only):
        summary["ratio_zdtp_to_native"] = round(
            statistics.median(
                r["drain"]["zdtp"]["changes_per_s"] / r["drain"]["native"]["changes_per_s"] for r in runs
            ),
            3,
        )
        summary["ratio_of_medians_zdtp_to_native"] = round(
            median_of(runs, "zdtp") / median_of(runs, "native"), 3
        )
    if {"zdtp", "recvlogical"} <= set(args.only):
        summary["ratio_zdtp_to_recvlogical"] = round(
            statistics.median(
                r["drain"]["zdtp"]["changes_per_s"] / r["drain"]["recvlogical"]["changes_per_s"] for r in runs
            ),
            3,
        )
    if base_repo:
        summary["ratio_zdtp_to_zdtp_base"] = round(
            statistics.median(
                r["drain"]["zdtp"]["changes_per_s"] / r["drain"]["zdtp_base"]["changes_per_s"] for r in runs
            ),
            3,
        )
        summary["base_worker"] = str(base_repo)
    for consumer in ("zdtp", "native"):
        lats = [r["latency"][consumer] for r in runs if consumer in r.get("latency", {})]
        if lats:
            summary[f"median_{consumer}_p50_ms"] = statistics.median(x["p50_ms"] for x in lats)
            summary[f"median_{consumer}_p99_ms"] = statistics.median(x["p99_ms"] for x in lats)
    result = {
        "runs": runs,
        "summary": summary,
        "server": args.server,
        "postgres": version,
        "changes": args.changes,
        "rate": args.rate,
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
