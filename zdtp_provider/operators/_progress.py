"""Worker progress in the task log: the recent log lines of a Job's pods, read by polling.

Never ``follow=true``: a followed stream blocks the wait loop, and KWOK never closes one. Each
read asks for the last :data:`TAIL_LINES` lines with kubelet timestamps; the timestamp prefix
makes every raw line unique, so the lines after the last one already shown are the new ones (a
line scrolled out between two reads is skipped, never shown twice). Bounded: at most
:data:`MAX_PODS` pods per read, :data:`TAIL_LINES` lines and :data:`LIMIT_BYTES` per pod.

Status decides the outcome (``k8s.status``); these lines are only for the person watching.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from kubernetes.client import V1Pod

from zdtp_provider.k8s.pod import CONTAINER_NAME

TAIL_LINES = 50
LIMIT_BYTES = 64 * 1024
MAX_PODS = 10
# Worker events that are bookkeeping, not progress (one per chunk start/skip).
QUIET_EVENTS = frozenset({"chunk_start", "chunk_skip"})


def after_last(lines: list[str], last: str | None) -> list[str]:
    """The lines after ``last`` (all of them when ``last`` is not among them)."""
    if last is not None:
        for i in range(len(lines) - 1, -1, -1):
            if lines[i] == last:
                return lines[i + 1 :]
    return lines


def describe(raw: str) -> str | None:
    """One task-log line for a timestamped worker log line, or None for noise.

    Worker lines are JSON (``zdtp_worker.logs``): shown as ``event k=v...`` without the identity
    fields the task already knows; debug lines and per-chunk bookkeeping are dropped. Anything
    else (a crash before logging was set up, a simulated pod's line) is shown as it is.
    """
    _, _, text = raw.partition(" ")
    text = text.strip()
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return text
    if not isinstance(record, dict):
        return text
    if record.get("level") == "debug" or record.get("event") in QUIET_EVENTS:
        return None
    skip = {"ts", "level", "event", "mode", "task", "run_id", "worker"}
    fields = " ".join(f"{k}={v}" for k, v in record.items() if k not in skip)
    return f"{record.get('event', 'log')} {fields}".strip()


class ProgressTail:
    """Remembers, per pod, the last raw line shown; :meth:`read` returns the new ones."""

    def __init__(self, read_log: Callable[..., str]) -> None:
        # read_log = CoreV1Api.read_namespaced_pod_log (or anything with its signature).
        self._read_log = read_log
        self._last: dict[str, str] = {}

    def read(self, pods: Iterable[V1Pod], *, tail_lines: int = TAIL_LINES) -> list[str]:
        """New progress lines of ``pods`` as ``pod: line``, oldest pod first."""
        started = [p for p in pods if p.status and p.status.start_time]
        started.sort(key=lambda p: p.status.start_time)
        out: list[str] = []
        for pod in started[-MAX_PODS:]:
            name = pod.metadata.name
            try:
                # Raw bytes: the client's own decoding of a log body is not reliable (it can hand
                # back the repr of the bytes).
                response = self._read_log(
                    name,
                    pod.metadata.namespace,
                    container=CONTAINER_NAME,
                    timestamps=True,
                    tail_lines=tail_lines,
                    limit_bytes=LIMIT_BYTES,
                    _preload_content=False,
                )
                text = response.data.decode("utf-8", "replace")
            except Exception:  # no log yet (container creating), pod gone: try again next poll
                continue
            lines = [line for line in text.splitlines() if line.strip()]
            new = after_last(lines, self._last.get(name))
            if lines:
                self._last[name] = lines[-1]
            out += [f"{name}: {d}" for d in map(describe, new) if d]
        return out
