"""``zdtp-worker incremental``: wire credentials, signals, the health server and the stream.

Runs until SIGTERM/SIGINT (exit 0 after committing or rolling back the current batch) or an
error (exit code from :mod:`zdtp_worker.contract.errors`). With ``--initial-snapshot`` (or
``spec.incremental.initial_snapshot``) and no stream state on the target yet, it first creates the
slot with an exported snapshot, runs the full-sync copy under that snapshot, then streams from the
slot: changes committed before the slot's consistent point are in the copy, later ones come from
the stream, none in both.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
import time
from types import FrameType

from psycopg2.extras import ReplicationCursor

from zdtp_worker.contract.errors import ConfigError
from zdtp_worker.contract.result import TableResult, WorkerResult
from zdtp_worker.contract.spec import WorkerSpec
from zdtp_worker.control.names import slot_name
from zdtp_worker.control.session import connect
from zdtp_worker.control.stream_setup import drop_slot
from zdtp_worker.credentials import load_dsn
from zdtp_worker.incremental.health import HealthServer, Metrics
from zdtp_worker.incremental.initial_copy import copy_tables
from zdtp_worker.incremental.pgoutput import format_lsn
from zdtp_worker.incremental.replication import create_slot_exporting_snapshot
from zdtp_worker.incremental.stream import SnapshotHandoff, Stream
from zdtp_worker.incremental.target import Target
from zdtp_worker.logs import report_status

log = logging.getLogger("zdtp_worker.incremental")


def initial_snapshot_handoff(
    spec: WorkerSpec, *, source_dsn: str, target_dsn: str, metrics: Metrics
) -> SnapshotHandoff:
    """Build the stream's snapshot hand-off: slot with exported snapshot → full copy → state.

    Runs only while ``zdtp.cdc_state`` has no applied LSN for the stream (first start, or a start
    after a hand-off that did not finish); afterwards the worker just streams.
    """

    def handoff(cur: ReplicationCursor, target: Target) -> int:
        slot = slot_name(spec)
        # No TRUNCATE first: each table's content is replaced in one target transaction under the
        # snapshot (.initial_copy), so a copy that fails part-way leaves the previous content.
        src = connect(source_dsn, role="source", application_name="zdtp-cdc")
        try:
            # No state on the target means no completed hand-off: a slot left over from a crashed
            # attempt has a consistent point the copy did not use, so start over (zdtp's slot only).
            drop_slot(src, slot)
        finally:
            src.close()
        consistent_point, snapshot = create_slot_exporting_snapshot(cur, slot)
        log.info(
            "created slot %s at %s, copying under snapshot %s", slot, format_lsn(consistent_point), snapshot
        )
        # The copy can take hours: keep /healthz alive meanwhile (the copy itself reports progress).
        copying = threading.Event()

        def beat() -> None:
            while not copying.wait(5.0):
                metrics.beat()

        threading.Thread(target=beat, name="zdtp-copy-heartbeat", daemon=True).start()
        try:
            rows = copy_tables(spec, source_dsn=source_dsn, target_dsn=target_dsn, snapshot=snapshot)
        finally:
            copying.set()
        # Everything committed before the consistent point is in the copy: mark it applied.
        # (commit LSNs in the stream are >= the consistent point, so store one less as the last
        # applied commit; the end LSN is the consistent point itself, where the slot starts, so
        # the slot's confirmed position is never past what the target holds: no false "gap".)
        target.commit(
            commit_lsn=max(consistent_point - 1, 0),
            end_lsn=consistent_point,
            commit_time=None,
            transactions=0,
            changes=rows,
        )
        log.info("initial copy done: %s rows; streaming from %s", rows, format_lsn(consistent_point))
        return consistent_point

    return handoff


def run_incremental(
    spec: WorkerSpec,
    *,
    source_dsn: str,
    target_dsn: str,
    stop: threading.Event,
    initial_snapshot: bool = False,
    metrics: Metrics | None = None,
    health_port: int | None = None,
) -> WorkerResult:
    """Stream until ``stop`` is set; raise WorkerError on failure. Usable in-process (tests)."""
    started = time.monotonic()
    metrics = metrics or Metrics(
        task=spec.task, slot=slot_name(spec), ready_max_lag_seconds=spec.incremental.ready_max_lag_seconds
    )
    server: HealthServer | None = None
    port = spec.incremental.health_port if health_port is None else health_port
    if port >= 0:
        try:
            server = HealthServer(metrics, port=port).start()
        except OSError as exc:
            raise ConfigError(f"health port {port}: {exc.strerror}") from None
    handoff = (
        initial_snapshot_handoff(spec, source_dsn=source_dsn, target_dsn=target_dsn, metrics=metrics)
        if initial_snapshot or spec.incremental.initial_snapshot
        else None
    )
    status = report_status(metrics, stop=stop)  # the periodic `status` log line (zdtp_worker.logs)
    try:
        stats = Stream(
            spec,
            source_dsn=source_dsn,
            target_dsn=target_dsn,
            metrics=metrics,
            stop=stop,
            snapshot_handoff=handoff,
        ).run()
    finally:
        status.close()
        if server is not None:
            server.stop()
    return WorkerResult(
        mode="incremental",
        run_id=spec.run_id,
        worker=spec.worker,
        rows=stats.changes,
        chunks=stats.batches,
        seconds=round(time.monotonic() - started, 3),
        tables=[TableResult(table=str(t.source)) for t in spec.tables],
        message=f"stopped after {stats.transactions} transactions",
    )


def _configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=os.environ.get("ZDTP_LOG_LEVEL", "INFO").upper(),
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )


def run_incremental_cli(spec: WorkerSpec, args: argparse.Namespace) -> WorkerResult:
    _configure_logging()
    # The stream allocates many short-lived containers and builds no cycles: collect rarely, and
    # never rescan what start-up imported.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: finishing the current batch", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return run_incremental(
        spec,
        source_dsn=load_dsn("source"),
        target_dsn=load_dsn("target"),
        stop=stop,
        initial_snapshot=bool(getattr(args, "initial_snapshot", False)),
    )
