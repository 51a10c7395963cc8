"""One log format for both workers: a JSON object per line on stderr, with the same fields.

Every line carries ``ts`` (Unix seconds), ``level``, ``event`` and the worker's identity —
``mode``, ``task``, ``run_id``, ``worker`` — set once by :func:`configure` from the spec; then the
event's own fields. Structured events (:func:`event`: ``chunk_done``, ``progress``, ``status``...)
and records of the stdlib ``logging`` module (``event`` = ``log``, text under ``msg``, logger
under ``logger``) come out the same way, so one log pipeline query covers full and CDC workers.
Messages are passed through :func:`~zdtp_worker.credentials.redact`: a DSN quoted by a driver
error loses its password here too.

:class:`StatusLine` is the CDC worker's periodic ``status`` event: lag, applied LSN and
changes/s since the previous line, read from the stream's :class:`Metrics` (never written).

stdout stays reserved for the result summary.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import Any, Protocol

from zdtp_worker.credentials import redact

LEVEL_ENV = "ZDTP_LOG_LEVEL"
STATUS_INTERVAL_ENV = "ZDTP_STATUS_INTERVAL_SECONDS"
DEFAULT_STATUS_INTERVAL = 30.0
IDENTITY = ("mode", "task", "run_id", "worker")

_identity: dict[str, Any] = {}


def configure(spec: Any = None, *, stream: Any = None) -> None:
    """Set the identity fields from ``spec`` and send stdlib logging through the JSON format.

    Idempotent: a second call replaces the identity and the handler, never adds one.
    """
    _identity.clear()
    if spec is not None:
        _identity.update({k: getattr(spec, k, None) for k in IDENTITY})
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_zdtp", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._zdtp = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(os.environ.get(LEVEL_ENV, "INFO").upper())


def record(event_name: str, level: str = "info", **fields: Any) -> dict[str, Any]:
    """The dict one line holds: identity first, then the event's fields."""
    out: dict[str, Any] = {"ts": round(time.time(), 3), "level": level, "event": event_name}
    out.update({k: v for k, v in _identity.items() if v is not None})
    for key in IDENTITY:
        # The identity keeps its meaning on every line; an event's own value under the same name
        # (a copy mode, a pod's worker id) is kept beside it.
        if key in fields and key in out and fields[key] != out[key]:
            fields[f"event_{key}"] = fields.pop(key)
    out.update(fields)
    if isinstance(out.get("msg"), str):
        out["msg"] = redact(out["msg"])
    return out


def event(event_name: str, *, level: str = "info", **fields: Any) -> None:
    """Write one structured event line to stderr."""
    print(json.dumps(record(event_name, level, **fields), default=str), file=sys.stderr, flush=True)


class JsonFormatter(logging.Formatter):
    """A ``logging`` record as the same JSON line :func:`event` writes."""

    def format(self, rec: logging.LogRecord) -> str:
        fields: dict[str, Any] = {"logger": rec.name, "msg": rec.getMessage()}
        if rec.exc_info:
            fields["error"] = redact(self.formatException(rec.exc_info))
        return json.dumps(record("log", rec.levelname.lower(), **fields), default=str)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


class StreamMetrics(Protocol):
    """What the status line reads of ``zdtp_worker.incremental.health.Metrics``."""

    changes_applied: int
    transactions_applied: int
    applied_lsn: int
    lag_bytes: int
    lag_seconds: float
    streaming: bool
    lease_held: bool
    slot_retained_wal_bytes: int


class StatusLine:
    """Every ``interval`` seconds, one ``status`` event from the stream's metrics, until ``stop``.

    ``changes_per_s`` is the rate since the previous line (not since start), so a stall shows at
    once. Runs in a daemon thread: it only reads plain attributes (single writer, see health).
    """

    def __init__(self, metrics: StreamMetrics, *, stop: threading.Event, interval: float | None = None):
        self.metrics = metrics
        self.stop = stop
        self.interval = interval if interval is not None else status_interval()
        self._last = (time.monotonic(), metrics.changes_applied)
        self._closed = threading.Event()

    def snapshot(self) -> dict[str, Any]:
        m = self.metrics
        now = time.monotonic()
        then, changes_then = self._last
        rate = (m.changes_applied - changes_then) / max(now - then, 1e-6)
        self._last = (now, m.changes_applied)
        return {
            "streaming": m.streaming,
            "lease_held": m.lease_held,
            "applied_lsn": format_lsn(m.applied_lsn),
            "lag_seconds": round(m.lag_seconds, 3),
            "lag_bytes": m.lag_bytes,
            "changes_per_s": round(rate, 1),
            "changes_total": m.changes_applied,
            "transactions_total": m.transactions_applied,
            "slot_retained_wal_bytes": m.slot_retained_wal_bytes,
        }

    def run(self) -> None:
        while not self._closed.wait(self.interval) and not self.stop.is_set():
            event("status", **self.snapshot())

    def close(self) -> None:
        """End the thread even if ``stop`` never comes (the stream failed)."""
        self._closed.set()

    def start(self) -> StatusLine:
        threading.Thread(target=self.run, name="zdtp-status-line", daemon=True).start()
        return self


def report_status(metrics: StreamMetrics, *, stop: threading.Event) -> StatusLine:
    """Start the periodic status line (the CDC entry point's call; ``close()`` it when done)."""
    return StatusLine(metrics, stop=stop).start()


def status_interval() -> float:
    try:
        return max(1.0, float(os.environ.get(STATUS_INTERVAL_ENV, DEFAULT_STATUS_INTERVAL)))
    except ValueError:
        return DEFAULT_STATUS_INTERVAL
