"""How many parallel COPY streams (``full.streams``) a full-sync worker gets. Pure.

A stream is one source and one target session copying the chunks of the worker's tables, all
under one shared snapshot; the worker copies its tables one after the other, and the streams of a
table take its chunks as they become free. The planner calls :func:`choose_streams` per worker;
a sync that sets ``streams`` itself gets exactly that.

More streams pay off only when both hold:

- **there are chunks to share**: each stream should get at least ``MIN_CHUNKS_PER_STREAM`` chunks
  of the worker's biggest piece of work, otherwise the extra sessions (and the exported snapshot
  they share) cost more than the overlap saves. A table copied as one chunk gets one stream.
- **the worker has the CPU to relay them**: the worker only moves bytes between the two sessions
  (the databases do the COPY work); measured on the 5M-row benchmark the relay costs ~0.36 µs of
  worker CPU per row, i.e. ~0.125 of a core at the ~350k rows/s one stream reaches when the
  databases are the limit. So a stream per ``CPU_PER_STREAM`` of the worker's CPU request.

A crash redoes at most one chunk per stream, so the choice is also the worker's worst-case redo
after a crash; ``MAX_AUTO_STREAMS`` bounds it (and the sessions opened on the source).
"""

from __future__ import annotations

import math

MIN_CHUNKS_PER_STREAM = 2
CPU_PER_STREAM = 0.125  # cores of the worker one stream's relay needs (see the module docstring)
MAX_AUTO_STREAMS = 4
DEFAULT_CPU = 0.25  # no request and no limit: assume the config's default request (250m)


def cpu_cores(quantity: str | None) -> float | None:
    """A Kubernetes CPU quantity in cores (``250m`` → 0.25, ``2`` → 2.0); None when unset."""
    if quantity is None:
        return None
    q = str(quantity).strip()
    if q.endswith("m"):
        return float(q[:-1]) / 1000
    # Decimal SI suffixes are legal quantities, if odd for CPU ("1k" cores).
    for suffix, factor in (("k", 1e3), ("M", 1e6), ("G", 1e9)):
        if q.endswith(suffix):
            return float(q[: -len(suffix)]) * factor
    return float(q)


def worker_cpu(requests: dict[str, str], limits: dict[str, str]) -> float:
    """The CPU the worker can count on: its request (Kubernetes sets it to the limit when only a
    limit is given), else the config's default."""
    return cpu_cores(requests.get("cpu")) or cpu_cores(limits.get("cpu")) or DEFAULT_CPU


def choose_streams(*, rows: int, chunk_rows: int, cpu: float, explicit: int | None = None) -> int:
    """Streams for a worker whose biggest piece of work has ``rows`` rows (0 or a single-chunk
    table: 1), given its chunk size and CPU in cores; ``explicit`` (the config's) wins."""
    if explicit is not None:
        return explicit
    chunks = math.ceil(max(rows, 0) / max(chunk_rows, 1))
    by_size = chunks // MIN_CHUNKS_PER_STREAM
    by_cpu = math.floor(cpu / CPU_PER_STREAM + 1e-9)
    return max(1, min(by_size, by_cpu, MAX_AUTO_STREAMS))
