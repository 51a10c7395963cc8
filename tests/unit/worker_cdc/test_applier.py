"""The applier runs nothing after a failed piece of target work: a batch's commit is queued right
behind its apply, and must never run when that apply raised (it would store the batch's LSN
without all of its rows)."""

from __future__ import annotations

import threading

import pytest

from zdtp_worker.incremental.applier import Applier


def test_work_queued_behind_a_failure_never_runs() -> None:
    committed: list[int] = []
    ran: list[str] = []
    applier = Applier(on_committed=committed.append)
    gate = threading.Event()

    def apply() -> None:
        gate.wait(5)  # the commit is queued before the apply fails, as in the stream
        raise ValueError("apply could not complete a row")

    try:
        applier.submit(apply)
        applier.submit(lambda: ran.append("commit"), feedback_lsn=42)
        gate.set()
        with pytest.raises(ValueError, match="could not complete"):
            applier.reap(wait_all=True)
        commit_future = applier.in_flight[1][0]
        assert isinstance(commit_future.exception(timeout=5), RuntimeError)
    finally:
        applier.shutdown()
    assert ran == [] and committed == []


def test_work_in_order_reports_commits() -> None:
    committed: list[int] = []
    ran: list[int] = []
    applier = Applier(on_committed=committed.append)
    try:
        for i in range(5):
            applier.submit(lambda i=i: ran.append(i), feedback_lsn=i if i % 2 else None)
        assert applier.sync(lambda: "done") == "done"
    finally:
        applier.shutdown()
    assert ran == [0, 1, 2, 3, 4] and committed == [1, 3]
