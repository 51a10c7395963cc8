"""The worker's result summary: written to the termination-message file and stdout as one JSON
line, read back by operators from ``containerStatuses[].state.terminated.message``.

Kubernetes caps termination messages at 4096 bytes, so the summary stays short: per-table figures
only, never rows or credentials.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from pydantic import BaseModel, Field

from zdtp_worker.contract.envelope import TERMINATION_LOG, TERMINATION_LOG_ENV

MAX_MESSAGE_BYTES = 4096


class TableResult(BaseModel):
    table: str
    rows: int = 0
    bytes: int = 0
    chunks: int = 0
    chunks_skipped: int = 0
    checksum: str | None = None


class WorkerResult(BaseModel):
    status: str = "ok"  # ok | error
    exit_code: int = 0
    mode: str
    run_id: str
    worker: str
    rows: int = 0
    bytes: int = 0
    chunks: int = 0
    seconds: float = 0.0
    tables: list[TableResult] = Field(default_factory=list)
    message: str | None = None

    def to_message(self) -> str:
        text = self.model_dump_json(exclude_none=True)
        if len(text.encode()) > MAX_MESSAGE_BYTES:
            # Drop per-table detail rather than truncate into invalid JSON.
            text = self.model_copy(update={"tables": []}).model_dump_json(exclude_none=True)
        return text


def termination_log_path() -> Path:
    return Path(os.environ.get(TERMINATION_LOG_ENV, TERMINATION_LOG))


def write_result(result: WorkerResult) -> str:
    """Print the summary and, when the termination-log file exists, write it there too."""
    text = result.to_message()
    print(text, flush=True)
    path = termination_log_path()
    if path.exists() or os.environ.get(TERMINATION_LOG_ENV):
        with contextlib.suppress(OSError):
            path.write_text(text)
    return text


def parse_result(message: str | None) -> dict | None:
    """Parse a termination message back into a dict; ``None`` if absent or not ours."""
    if not message:
        return None
    try:
        data = json.loads(message)
    except ValueError:
        return None
    return data if isinstance(data, dict) and "run_id" in data else None
