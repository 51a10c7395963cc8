"""Hold a trigger's event until the scheduler has heard that the deferring process ended.

Airflow 3.3.2's scheduler fails a resumed task when the executor's "success" for the process that
deferred arrives after the resumed try was queued ("finished with state success, but the task
instance's state attribute is queued/running", apache/airflow#66374 family; only the
``scheduled`` state is guarded). That event reaches the scheduler some seconds after the
deferral: 3.6-6.9 s measured at load ~20 on two cores, ~6 s in the 100-task fan-out at load 12.
A trigger that fires sooner (the workload ended just after the operator's last read) loses the
worker's result. So a zdtp trigger keeps its event until ``not_before`` — the deferral time plus
``[zdtp] defer_settle_seconds`` (default 15 s) — and a task whose workload runs longer than that
after deferring pays nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger
from airflow.triggers.base import TriggerEvent

SETTLE_OPTION = ("zdtp", "defer_settle_seconds")
DEFAULT_SETTLE_SECONDS = 15.0


def settle_seconds() -> float:
    from airflow.configuration import conf

    value = conf.getfloat(*SETTLE_OPTION, fallback=DEFAULT_SETTLE_SECONDS)
    if value < 0:
        raise ValueError(f"[{SETTLE_OPTION[0]}] {SETTLE_OPTION[1]}: must be >= 0, got {value}")
    return value


def settle_deadline(now: dt.datetime | None = None) -> str | None:
    """The ISO time before which a trigger deferred now must not fire; None under ``dag.test()``.

    ``dag.test()`` without an executor runs the task and then its trigger inline, one after the
    other: there is no executor event to go stale, and holding would only slow every test run.
    """
    if _runs_inline():
        return None
    start = now or dt.datetime.now(dt.UTC)
    return (start + dt.timedelta(seconds=settle_seconds())).isoformat()


def _runs_inline() -> bool:
    from airflow.sdk.execution_time import task_runner

    comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    return type(comms).__name__ == "InProcessSupervisorComms"


async def hold_until(not_before: str | None) -> None:
    if not not_before:
        return
    wait = (dt.datetime.fromisoformat(not_before) - dt.datetime.now(dt.UTC)).total_seconds()
    if wait > 0:
        await asyncio.sleep(wait)


class SettlingTrigger:
    """A trigger that keeps its event until ``not_before`` (set by the deferring operator)."""

    not_before: str | None = None


class SettledPodTrigger(SettlingTrigger, KubernetesPodTrigger):
    """KPO's pod trigger, holding its event until ``not_before``."""

    def __init__(self, *args: Any, not_before: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.not_before = not_before

    @classmethod
    def wrapping(cls, trigger: KubernetesPodTrigger, not_before: str | None) -> SettledPodTrigger:
        _, kwargs = trigger.serialize()
        return cls(**kwargs, not_before=not_before)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return f"{type(self).__module__}.{type(self).__qualname__}", {**kwargs, "not_before": self.not_before}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async for event in super().run():
            await hold_until(self.not_before)
            yield event
