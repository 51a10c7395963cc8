"""Probes and metrics over stdlib HTTP: ``/healthz``, ``/readyz``, ``/metrics`` (Prometheus text).

The stream loop writes plain attributes of :class:`Metrics`; the HTTP thread only reads them
(single writer, the GIL makes each read atomic), so no locks are needed.

- ``/healthz`` 200 while the main loop ticks (at least every few seconds, also while waiting for
  the lease) and its connections are open; 503 otherwise, so Kubernetes restarts a wedged pod.
- ``/readyz`` 200 only while this replica holds the lease, streams, and lags less than
  ``ready_max_lag_seconds``; a standby replica is alive but not ready.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HEARTBEAT_STALE_SECONDS = 30.0


@dataclass
class Metrics:
    task: str
    slot: str
    ready_max_lag_seconds: float = 60.0
    started: float = field(default_factory=time.time)
    heartbeat: float = field(default_factory=time.monotonic)
    connections_ok: bool = True
    lease_held: bool = False
    streaming: bool = False
    changes_applied: int = 0
    transactions_applied: int = 0
    transactions_skipped: int = 0
    batches: int = 0
    batch_seconds_sum: float = 0.0
    applied_lsn: int = 0
    server_wal_end: int = 0
    lag_bytes: int = 0
    lag_seconds: float = 0.0
    schema_changes: int = 0
    # The source side, refreshed by the source watch (see .source_watch); -1: not known yet.
    slot_retained_wal_bytes: int = -1
    slot_safe_wal_bytes: int = -1  # -1 also when the source sets no max_slot_wal_keep_size
    source_wal_keep_unlimited: bool = False
    tables_not_streamed: int = 0
    sequences_moved: int = 0
    # Rows completed from the source (unchanged TOAST the target could not supply; see .refetch).
    rows_refetched: int = 0
    refetch_keys_gone: int = 0

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    def healthy(self) -> tuple[bool, str]:
        age = time.monotonic() - self.heartbeat
        if age > HEARTBEAT_STALE_SECONDS:
            return False, f"main loop stalled for {age:.0f}s"
        if not self.connections_ok:
            return False, "database connection lost"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        ok, why = self.healthy()
        if not ok:
            return ok, why
        if not self.lease_held:
            return False, "standby: another replica holds the lease"
        if not self.streaming:
            return False, "not streaming yet"
        if self.lag_seconds > self.ready_max_lag_seconds:
            return False, f"lagging {self.lag_seconds:.1f}s > {self.ready_max_lag_seconds:g}s"
        return True, "ok"

    def render(self) -> str:
        labels = f'task="{self.task}",slot="{self.slot}"'
        rows = [
            (
                "zdtp_cdc_changes_applied_total",
                "counter",
                "Source changes applied to the target.",
                self.changes_applied,
            ),
            (
                "zdtp_cdc_transactions_applied_total",
                "counter",
                "Source transactions applied.",
                self.transactions_applied,
            ),
            (
                "zdtp_cdc_transactions_skipped_total",
                "counter",
                "Replayed source transactions skipped (already applied).",
                self.transactions_skipped,
            ),
            ("zdtp_cdc_batches_total", "counter", "Target transactions committed.", self.batches),
            (
                "zdtp_cdc_batch_seconds_total",
                "counter",
                "Time spent applying batches.",
                round(self.batch_seconds_sum, 6),
            ),
            (
                "zdtp_cdc_lag_bytes",
                "gauge",
                "WAL bytes between the server's end and the applied LSN.",
                self.lag_bytes,
            ),
            (
                "zdtp_cdc_lag_seconds",
                "gauge",
                "Age of the oldest source commit not yet applied.",
                round(self.lag_seconds, 3),
            ),
            (
                "zdtp_cdc_applied_lsn",
                "gauge",
                "End LSN of the last applied source transaction.",
                self.applied_lsn,
            ),
            (
                "zdtp_cdc_lease_held",
                "gauge",
                "1 when this replica holds the stream's lease.",
                int(self.lease_held),
            ),
            ("zdtp_cdc_streaming", "gauge", "1 while replication is streaming.", int(self.streaming)),
            (
                "zdtp_cdc_schema_changes_total",
                "counter",
                "Source column changes (added, widened, kept) applied on the target.",
                self.schema_changes,
            ),
            (
                "zdtp_cdc_slot_retained_wal_bytes",
                "gauge",
                "WAL the stream's slot holds on the source (current LSN - restart_lsn).",
                self.slot_retained_wal_bytes,
            ),
            (
                "zdtp_cdc_slot_safe_wal_bytes",
                "gauge",
                "WAL the slot may still retain before the source invalidates it (-1: no limit).",
                self.slot_safe_wal_bytes,
            ),
            (
                "zdtp_cdc_source_wal_keep_unlimited",
                "gauge",
                "1 when the source has max_slot_wal_keep_size = -1 (retention without limit).",
                int(self.source_wal_keep_unlimited),
            ),
            (
                "zdtp_cdc_tables_not_streamed",
                "gauge",
                "Source tables matching include that this stream does not carry.",
                self.tables_not_streamed,
            ),
            (
                "zdtp_cdc_sequences_moved_total",
                "counter",
                "Target sequences moved forward to the source's value.",
                self.sequences_moved,
            ),
            (
                "zdtp_cdc_rows_refetched_total",
                "counter",
                "Rows whose unchanged TOAST values were read from the source (the target lacked them).",
                self.rows_refetched,
            ),
            (
                "zdtp_cdc_refetch_keys_gone_total",
                "counter",
                "Rows to read from the source that it no longer had (a later change accounts for them).",
                self.refetch_keys_gone,
            ),
        ]
        out = []
        for name, kind, help_text, value in rows:
            out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n{name}{{{labels}}} {value}\n")
        return "".join(out)


class _Handler(BaseHTTPRequestHandler):
    metrics: Metrics

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, self.metrics.render(), "text/plain; version=0.0.4")
        elif path in ("/healthz", "/livez"):
            ok, why = self.metrics.healthy()
            self._send(200 if ok else 503, why + "\n")
        elif path == "/readyz":
            ok, why = self.metrics.ready()
            self._send(200 if ok else 503, why + "\n")
        else:
            self._send(404, "not found\n")

    def _send(self, code: int, body: str, ctype: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # probes every few seconds would flood the log


class HealthServer:
    """Serve the probes on ``host:port`` from a daemon thread; ``port=0`` picks a free port."""

    def __init__(self, metrics: Metrics, *, port: int, host: str = "0.0.0.0") -> None:
        handler = type("Handler", (_Handler,), {"metrics": metrics})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="zdtp-health", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> HealthServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
