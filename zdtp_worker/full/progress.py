"""Structured log lines (one JSON object per line on stderr) and periodic progress reports.

stdout is reserved for the final result summary; everything a human or a log pipeline follows
goes to stderr: events (``plan``, ``chunk_start``, ``chunk_done``, ``chunk_skip``, ``swap``) and,
every ``progress_interval_seconds``, a ``progress`` line with rows, rows/s, percent and ETA.
During a chunk, rows are estimated from bytes streamed so far (COPY only reports rows at the end).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from zdtp_worker import logs


@dataclass
class Step:
    """What the run is doing, so an unexpected database error can say where it happened."""

    what: str = "connect"


def log_event(event: str, **fields: Any) -> None:
    logs.event(event, **fields)  # the format both workers share (zdtp_worker.logs)


class Progress:
    """Counts rows and bytes; ``run()`` reports them until cancelled."""

    def __init__(self, *, interval: float, total_rows: int = 0) -> None:
        self.interval = interval
        self.total_rows = total_rows  # estimate of rows this process will copy (0 = unknown)
        self.rows = 0
        self.bytes = 0
        self.table = ""
        self.chunk: int | None = None
        self._inflight_bytes = 0
        self._started = time.monotonic()

    def start_chunk(self, table: str, chunk: int) -> None:
        self.table, self.chunk = table, chunk

    def add_bytes(self, n: int) -> None:
        self._inflight_bytes += n

    def finish_chunk(self, rows: int, nbytes: int) -> None:
        self.rows += rows
        self.bytes += nbytes
        # Several chunks may be in flight (streams > 1): retire only this chunk's bytes.
        self._inflight_bytes = max(0, self._inflight_bytes - nbytes)

    def snapshot(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rows = self.rows
        if self._inflight_bytes and self.rows and self.bytes:
            rows += int(self._inflight_bytes * self.rows / self.bytes)
        rate = rows / elapsed
        out: dict[str, Any] = {
            "table": self.table,
            "chunk": self.chunk,
            "rows": rows,
            "bytes": self.bytes + self._inflight_bytes,
            "rows_per_s": round(rate),
        }
        if self.total_rows > 0:
            out["pct"] = round(min(100.0, 100.0 * rows / self.total_rows), 1)
            out["eta_s"] = round(max(0, self.total_rows - rows) / rate, 1) if rate > 0 else None
        return out

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            log_event("progress", **self.snapshot())
