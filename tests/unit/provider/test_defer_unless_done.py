"""defer_unless_done: defer only when the trigger's own poll has no event yet.

The cluster-backed cases (pods, Jobs, Deployments) are in
tests/integration/provider/test_defer_race.py; these pin the decision itself.
"""

from __future__ import annotations

from typing import Any

import pytest
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import TaskDeferred
from airflow.triggers.base import BaseTrigger

from zdtp_provider.operators._defer import defer_unless_done


class _Trigger(BaseTrigger):
    def serialize(self):
        return (f"{__name__}._Trigger", {})

    async def run(self):  # pragma: no cover - never run here
        yield None


class _Op(BaseOperator):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(task_id="t", **kwargs)
        self.resumed: list[tuple[Any, dict]] = []

    def execute_complete(self, context: Any, event: dict) -> str:
        self.resumed.append((context, event))
        return f"resumed:{event['status']}"


def _run(check) -> tuple[_Op, Any]:
    op = _Op()
    result = defer_unless_done(
        op, {"ctx": 1}, check=check, trigger=_Trigger(), method_name="execute_complete", where=("job-a", "ns")
    )
    return op, result


def test_finished_workload_resumes_in_process_with_the_triggers_event_shape() -> None:
    op, result = _run(lambda: {"status": "failed", "message": "exit 78"})
    assert result == "resumed:failed"
    assert op.resumed == [
        ({"ctx": 1}, {"name": "job-a", "namespace": "ns", "status": "failed", "message": "exit 78"})
    ]


def test_running_workload_defers_to_the_trigger() -> None:
    trigger = _Trigger()
    op = _Op()
    with pytest.raises(TaskDeferred) as deferred:
        defer_unless_done(
            op, {}, check=lambda: None, trigger=trigger, method_name="execute_complete", where=("a", "b")
        )
    assert deferred.value.trigger is trigger and deferred.value.method_name == "execute_complete"
    assert op.resumed == []


def test_a_failing_read_defers_instead_of_failing_the_task() -> None:
    def boom():
        raise ConnectionError("API server unreachable")

    op = _Op()
    with pytest.raises(TaskDeferred):
        defer_unless_done(
            op, {}, check=boom, trigger=_Trigger(), method_name="execute_complete", where=("a", "b")
        )
    assert op.resumed == []
