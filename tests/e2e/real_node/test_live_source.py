"""Issue 13's acceptance on the real node: a ``full+incremental`` sync of a source that never
stops writing, with a copy pod and then the stream pod killed, and a second trigger refused.

One scenario, with :class:`devtools.writer.Writer` committing inserts, updates, primary-key
changes, updates and key changes that leave a TOASTed body unchanged, and deletes the WHOLE time:

1. the DAG runs with the default ``tasks`` fan-out; one copy container is SIGKILLed mid-chunk: its
   try fails and the task's retry starts a pod that resumes from the recorded chunks → the run
   still succeeds, and verify passes although the source changed during the copy;
2. the stream pod is deleted with grace period 0 → the Deployment's new pod resumes the stream;
3. the DAG is triggered again → refused (the stream runs), naming the resync command; the stream
   pod is untouched;
4. the writer stops → the target converges to the source: every key's full row (digest.compare),
   within a bound; the measured convergence time is printed.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from devtools.real_node import RealNode, container_host_pid
from devtools.writer import KINDS, LiveTables, Writer
from devtools.writer import seed as seed_tables
from tests.e2e.conftest import SyncEnv, metadata_rows
from tests.e2e.real_node.test_airflow_on_real_node import _config
from tests.fixtures import digest
from tests.fixtures.cluster import Cluster

pytestmark = [pytest.mark.realnode, pytest.mark.cluster, pytest.mark.airflow, pytest.mark.postgres]

TASK = "zt-live"
LIVE = LiveTables()
ROWS, DOCS = 300_000, 300  # big enough that the copy takes several seconds in 20 chunks
CHUNK_ROWS = 15_000
RATE = 40.0  # writer transactions per second (1 to 3 changes each)
CONVERGE_BOUND = 60.0  # seconds from the writer's stop until target == source (measured: printed)
COPY_PODS = "app.kubernetes.io/component=full-sync"
STREAM_PODS = f"app.kubernetes.io/component=incremental-sync,zdtp.io/task={TASK}"


def _wait(what: str, probe, timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _differences(source_dsn: str, target_dsn: str) -> list[str]:
    return digest.compare(
        source_dsn, target_dsn, schemas=["public"], tables=LIVE.all, shape=False, sequences="skip"
    )


class _KillCopyMidChunk(threading.Thread):
    """SIGKILLs, once, a copy container that has finished a chunk and is inside the next one."""

    def __init__(self, cluster: Cluster, namespace: str, writer: Writer) -> None:
        super().__init__(daemon=True, name="kill-copy")
        self.cluster, self.namespace, self.writer = cluster, namespace, writer
        self.stop = threading.Event()
        self.killed: str | None = None
        self.killed_at = "-"
        self.chunks_done_before = 0
        self.writes_before = 0

    def _mid_chunk(self, pod: Any) -> int:
        try:
            log = self.cluster.core.read_namespaced_pod_log(pod.metadata.name, self.namespace)
        except Exception:
            return 0
        started, done = log.count('"event": "chunk_start"'), log.count('"event": "chunk_done"')
        return done if done >= 1 and started > done else 0

    def run(self) -> None:
        while not self.stop.is_set() and self.killed is None:
            for pod in self.cluster.core.list_namespaced_pod(self.namespace, label_selector=COPY_PODS).items:
                statuses = pod.status.container_statuses or []
                if not (statuses and statuses[0].state.running):
                    continue
                done = self._mid_chunk(pod)
                if done:
                    os.kill(container_host_pid(statuses[0].container_id), signal.SIGKILL)
                    self.killed, self.chunks_done_before = pod.metadata.name, done
                    self.killed_at = _now()
                    self.writes_before = self.writer.transactions
                    return
            self.stop.wait(0.3)


def _stream_pod(cluster: Cluster, namespace: str) -> Any:
    """The stream's pod when exactly one exists and its container is ready."""
    pods = cluster.core.list_namespaced_pod(namespace, label_selector=STREAM_PODS).items
    live = [p for p in pods if p.metadata.deletion_timestamp is None]
    if len(live) != 1:
        return None
    statuses = live[0].status.container_statuses or []
    return live[0] if statuses and statuses[0].ready else None


def _now() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S.%f")


def _explain(problems: list[str], writer: Writer, phases: dict[str, str], target_dsn: str) -> str:
    """What a failure needs: each first differing key's committed history (following key
    changes back), the run's phases on the same clock, and the copy's chunks of that table."""
    out = ["", "phases (UTC): " + ", ".join(f"{k} {v}" for k, v in phases.items())]
    table = None
    for line in problems:
        if not line.startswith("  "):
            table = line.split(":", 1)[0]
            continue
        match = re.match(r"\s+(missing|extra|changed) \('(-?\d+)',\)", line)
        if table and match:
            out.append(f"{match.group(1)} {table} {match.group(2)}: the writer's changes of this row")
            out += [f"    {e.line()}" for e in writer.trace(table, int(match.group(2)))] or ["    (none)"]
    query = (
        "SELECT c.chunk_no, to_char(c.done_at AT TIME ZONE 'UTC', 'HH24:MI:SS.US'), p.chunks -> c.chunk_no"
        " FROM zdtp.full_chunks c JOIN zdtp.full_plans p USING (run_id, target_table, part)"
        " WHERE c.target_table = %s ORDER BY c.done_at"
    )
    try:
        with psycopg.connect(target_dsn) as conn:
            for label in LIVE.all:
                chunks = conn.execute(query, (label,)).fetchall()
                out.append(
                    f"copy of {label}: " + "; ".join(f"chunk {n} done {at} {r}" for n, at, r in chunks)
                )
    except psycopg.Error as exc:  # the explanation must never hide the failure itself
        out.append(f"(chunks not readable: {exc})")
    return "\n".join(out)


def _stream_log(cluster: Cluster, namespace: str) -> str:
    """The running stream pod's log lines about rows it had to complete from the source."""
    pod = _stream_pod(cluster, namespace)
    if pod is None:
        return "\n(no running stream pod to read the log of)"
    log = cluster.core.read_namespaced_pod_log(pod.metadata.name, namespace, tail_lines=2000)
    if log.startswith(("b'", 'b"')):  # the client hands JSON-looking logs back as a bytes repr
        log = ast.literal_eval(log).decode(errors="replace")
    lines = [line for line in log.splitlines() if "from the source" in line or "error" in line.lower()]
    return f"\nstream pod {pod.metadata.name}, log lines about completions/errors (last 20):\n" + "\n".join(
        lines[-20:]
    )


def _copy_stats(target_dsn: str) -> str:
    with psycopg.connect(target_dsn) as conn:
        if not conn.execute("SELECT to_regclass('zdtp.full_chunks')").fetchone()[0]:
            return "no chunk recorded"
        n, rows, first, last = conn.execute(
            "SELECT count(*), sum(rows), min(done_at), max(done_at) FROM zdtp.full_chunks"
        ).fetchone()
    span = (last - first).total_seconds() if n else 0.0
    return f"{n} chunks, {rows} rows, {span:.1f}s from the first chunk done to the last"


def _applied(target_dsn: str) -> tuple[int, str] | None:
    """(transactions applied, end LSN) of the stream, from the target's zdtp.cdc_state."""
    with psycopg.connect(target_dsn) as conn:
        exists = conn.execute("SELECT to_regclass('zdtp.cdc_state')").fetchone()[0]
        if not exists:
            return None
        row = conn.execute(
            "SELECT sum(transactions)::bigint, max(end_lsn)::text FROM zdtp.cdc_state"
        ).fetchone()
    return None if row[0] is None else (row[0], row[1])


def test_live_source_full_incremental_survives_kills_and_refuses_a_rerun(
    sync_env: SyncEnv,
    source_dsn: str,
    target_dsn: str,
    cluster: Cluster,
    node_namespace: str,
    real_node: RealNode,
    seed: int,
) -> None:
    sync_env.env["AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT"] = "180"
    seed_tables(source_dsn, rows=ROWS, docs=DOCS, tables=LIVE, seed=seed)
    config = _config(
        TASK,
        node_namespace,
        real_node,
        mode="full+incremental",
        workers=2,
        chunk_rows=CHUNK_ROWS,
    )
    config["tables"] = LIVE.all
    dag_id = sync_env.write(config)
    t0 = time.monotonic()

    writer = Writer(source_dsn, seed=seed, rate=RATE, tables=LIVE).start()
    try:
        # Two DAG runs: one Airflow process serves both (its start-up paid once).
        with sync_env.one_airflow():
            _scenario(sync_env, dag_id, source_dsn, target_dsn, cluster, node_namespace, writer, t0)
    finally:
        # The stream holds the slot: stop it before the fixtures drop the databases.
        cluster.apps.delete_collection_namespaced_deployment(
            node_namespace, label_selector=f"zdtp.io/task={TASK}"
        )
        _wait(
            "the stream pods to go",
            lambda: not cluster.core.list_namespaced_pod(node_namespace, label_selector=STREAM_PODS).items,
            60,
        )


def _scenario(
    sync_env: SyncEnv,
    dag_id: str,
    source_dsn: str,
    target_dsn: str,
    cluster: Cluster,
    node_namespace: str,
    writer: Writer,
    t0: float,
) -> None:
    timings: dict[str, float] = {}
    phases = {"writer started": _now()}
    killer = _KillCopyMidChunk(cluster, node_namespace, writer)
    try:
        # 1. The whole DAG, a copy container SIGKILLed mid-chunk, writes all along.
        killer.start()
        phases["first run"] = _now()
        try:
            run = sync_env.dags_test(dag_id, timeout=600)
        finally:
            killer.stop.set()
            killer.join()
        phases["first run ended"] = _now()
        phases["copy pod killed"] = killer.killed_at
        timings["first run"] = time.monotonic() - t0
        print(
            f"first run: {run.state} {run.tasks}; killed copy pod: {killer.killed}; {_copy_stats(target_dsn)}"
        )
        assert writer.running()
        assert run.state == "success", run.output[-6000:]
        copies = {t: state for t, state in run.tasks.items() if t.startswith("copy[")}
        assert len(copies) == 2 and set(copies.values()) == {"success"}, run.tasks
        assert {t: state for t, state in run.tasks.items() if t not in copies} == {
            "prepare_stream": "success",
            "plan": "success",
            "verify": "success",
            "stream": "success",
        }, run.tasks
        assert killer.killed, "no copy container was caught between chunks: the copy was too short"
        print(
            f"killed copy pod {killer.killed} after {killer.chunks_done_before} chunk(s),"
            f" {killer.writes_before} writer transactions in"
        )
        assert writer.transactions > killer.writes_before > 0  # writes before and after the kill
        ((tries,),) = metadata_rows(
            sync_env.home,
            "SELECT max(try_number) FROM task_instance WHERE dag_id = ? AND task_id = 'copy'",
            (dag_id,),
        )
        assert tries >= 2, f"the killed copy pod's task was not retried (max try {tries})"

        # 2. The stream pod deleted at once (grace 0): the Deployment's next pod resumes.
        before = _wait("the stream pod to be ready", lambda: _stream_pod(cluster, node_namespace), 120)
        applied = _wait("the stream to apply a transaction", lambda: _applied(target_dsn), 60)
        cluster.core.delete_namespaced_pod(before.metadata.name, node_namespace, grace_period_seconds=0)
        t_kill = time.monotonic()
        phases["stream pod deleted"] = _now()
        after = _wait(
            "a new stream pod to be ready",
            lambda: (
                (p := _stream_pod(cluster, node_namespace)) and p.metadata.uid != before.metadata.uid and p
            ),
            180,
        )
        resumed = _wait(
            "the new stream pod to apply transactions",
            lambda: (a := _applied(target_dsn)) and a[0] > applied[0] and a,
            120,
        )
        timings["stream pod replaced and applying"] = time.monotonic() - t_kill
        phases["new stream pod applies"] = _now()
        print(f"stream pod {before.metadata.name} deleted; {after.metadata.name} applies ({resumed})")

        # 3. Triggered again while the stream runs: refused with the resync command, stream untouched.
        t_rerun = time.monotonic()
        phases["second run"] = _now()
        again = sync_env.dags_test(dag_id, timeout=600)
        timings["second run (refused)"] = time.monotonic() - t_rerun
        assert again.state == "failed", (again.tasks, again.output[-4000:])
        assert not any(t.startswith("copy") and s == "success" for t, s in again.tasks.items()), again.tasks
        assert "zdtp teardown" in again.output, again.output[-4000:]
        still = _stream_pod(cluster, node_namespace)
        assert still is not None and still.metadata.uid == after.metadata.uid, (
            "the refused run touched the stream"
        )
        assert writer.running()
    finally:
        report = writer.stop()
        phases["writer stopped"] = _now()
        print(report.line())

    # 4. Writer stopped: every key's full row equal, within the bound; the time is measured.
    assert all(report.counts.get(kind, 0) > 0 for kind in KINDS), report.counts
    t_stop = time.monotonic()
    problems = _differences(source_dsn, target_dsn)
    while problems and time.monotonic() - t_stop < CONVERGE_BOUND:
        time.sleep(1)
        problems = _differences(source_dsn, target_dsn)
    converged = time.monotonic() - t_stop
    assert not problems, (
        f"target differs from source {converged:.0f}s after the writer stopped (writer seed {writer.seed}):\n"
        + "\n".join(problems)
        + _explain(problems, writer, phases, target_dsn)
        + _stream_log(cluster, node_namespace)
    )
    timings["convergence after the writer stopped"] = converged
    timings["total"] = time.monotonic() - t0
    print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
