"""The applier thread: the one thread that uses the target connection while the stream runs.

The main thread decodes and batches while the applier runs COPY/upsert/commit of the previous
batch (psycopg releases the GIL while the server works). Work reaches the applier in submission
order through a one-thread executor, so order is unchanged; at most ``MAX_IN_FLIGHT`` operations
queue up. A commit's feedback LSN is handed back to the main thread (which owns the replication
connection) only once the applier reports that commit done.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

_T = TypeVar("_T")
MAX_IN_FLIGHT = 2


class Applier:
    """Ordered, bounded queue of target work on one thread; errors surface in the caller's thread."""

    def __init__(self, *, on_committed: Callable[[int], None]) -> None:
        self.on_committed = on_committed  # called (main thread) with a commit's end LSN once it is done
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zdtp-apply")
        self.in_flight: deque[tuple[Future[object], int | None]] = deque()
        self.failed: BaseException | None = None  # the first error of any work: nothing runs after it

    def submit(self, fn: Callable[[], object], *, feedback_lsn: int | None = None) -> None:
        """Queue target work (runs in order on the applier thread); bound the queue."""
        self.in_flight.append((self.executor.submit(self._guarded, fn), feedback_lsn))
        self.reap()

    def _guarded(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` unless earlier work failed. Work is queued ahead of the main thread seeing
        an error: a batch's commit sits right behind its apply, and an apply that raised without
        aborting the target transaction (a row it could not complete, a switch to text mode)
        must not be followed by that commit, which would store the batch's LSN without its rows."""
        if self.failed is not None:
            raise RuntimeError("not run: earlier target work failed") from self.failed
        try:
            return fn()
        except BaseException as exc:
            self.failed = exc
            raise

    def reap(self, *, wait_all: bool = False) -> None:
        """Collect finished work in order: raise its errors, report finished commits."""
        while self.in_flight:
            future, feedback_lsn = self.in_flight[0]
            if not future.done() and not wait_all and len(self.in_flight) <= MAX_IN_FLIGHT:
                return
            future.result()  # waits if needed; re-raises the applier's error in the main thread
            self.in_flight.popleft()
            if feedback_lsn is not None:
                self.on_committed(feedback_lsn)

    def sync(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on the applier thread after all queued work and return its result."""
        self.reap(wait_all=True)
        return self.executor.submit(self._guarded, fn).result()

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
