"""Triggers hold their event until the deferral has settled (zdtp_provider.triggers.settle).

The race it closes needs a scheduler under load (bench/fanout.py counts it as ``state_mismatch``);
these pin the mechanism: the deadline each deferral sets, the hold, and that the pod trigger
survives serialization with it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import time
from typing import Any

import pytest
from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import TaskDeferred

from zdtp_provider.operators._defer import defer_unless_done
from zdtp_provider.operators.full import _settled
from zdtp_provider.triggers._base import ZdtpTriggerBase
from zdtp_provider.triggers.settle import SettledPodTrigger, hold_until, settle_deadline


class _DoneAtOnce(ZdtpTriggerBase):
    async def run(self):
        yield await self.poll(lambda: {"status": "success"})


def _pod_trigger() -> KubernetesPodTrigger:
    return KubernetesPodTrigger(
        pod_name="zdtp-w1",
        pod_namespace="ns",
        trigger_start_time=dt.datetime(2026, 12, 2, tzinfo=dt.UTC),
        base_container_name="worker",
        get_logs=False,
        poll_interval=2,
    )


def _in(seconds: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()


def test_deadline_is_the_configured_settle_after_now(monkeypatch: pytest.MonkeyPatch) -> None:
    now = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
    assert settle_deadline(now) == (now + dt.timedelta(seconds=15)).isoformat()
    monkeypatch.setenv("AIRFLOW__ZDTP__DEFER_SETTLE_SECONDS", "2.5")
    assert settle_deadline(now) == (now + dt.timedelta(seconds=2.5)).isoformat()
    monkeypatch.setenv("AIRFLOW__ZDTP__DEFER_SETTLE_SECONDS", "-1")
    with pytest.raises(ValueError, match=r"\[zdtp\] defer_settle_seconds: must be >= 0, got -1"):
        settle_deadline(now)


def test_no_hold_when_dag_test_runs_the_trigger_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    class InProcessSupervisorComms:  # the comms dag.test() installs (same class name)
        pass

    from airflow.sdk.execution_time import task_runner

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", InProcessSupervisorComms(), raising=False)
    assert settle_deadline() is None


def test_zdtp_trigger_event_waits_for_not_before() -> None:
    trigger = _DoneAtOnce(name="job-a", namespace="ns", not_before=_in(0.6))
    started = time.monotonic()
    event = asyncio.run(anext(trigger.run()))
    assert event == {"name": "job-a", "namespace": "ns", "status": "success"}
    assert time.monotonic() - started >= 0.55
    _, kwargs = trigger.serialize()
    assert kwargs["not_before"] == trigger.not_before


def test_past_or_missing_deadline_does_not_wait() -> None:
    started = time.monotonic()
    asyncio.run(hold_until(None))
    asyncio.run(hold_until(_in(-30)))
    assert time.monotonic() - started < 0.5


def test_defer_unless_done_sets_the_deadline_on_zdtp_triggers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__ZDTP__DEFER_SETTLE_SECONDS", "20")
    trigger = _DoneAtOnce(name="job-a", namespace="ns")
    before = dt.datetime.now(dt.UTC)
    with pytest.raises(TaskDeferred) as deferred:
        defer_unless_done(
            BaseOperator(task_id="t"),
            {},
            check=lambda: None,
            trigger=trigger,
            method_name="execute_complete",
            where=("job-a", "ns"),
        )
    not_before = dt.datetime.fromisoformat(deferred.value.trigger.not_before)
    twenty = dt.timedelta(seconds=20)
    assert before + twenty <= not_before <= dt.datetime.now(dt.UTC) + twenty


def test_kpo_deferral_becomes_a_settled_pod_trigger_that_round_trips() -> None:
    kpo = TaskDeferred(trigger=_pod_trigger(), method_name="trigger_reentry", kwargs={"k": 1}, timeout=None)
    settled = _settled(kpo)
    assert (settled.method_name, settled.kwargs) == ("trigger_reentry", {"k": 1})
    assert isinstance(settled.trigger, SettledPodTrigger) and settled.trigger.not_before
    classpath, kwargs = settled.trigger.serialize()
    _, original = kpo.trigger.serialize()
    assert kwargs == {**original, "not_before": settled.trigger.not_before}
    module, name = classpath.rsplit(".", 1)
    again: Any = getattr(importlib.import_module(module), name)(**kwargs)
    assert isinstance(again, SettledPodTrigger) and again.serialize() == (classpath, kwargs)
    assert _settled(settled) is settled  # a re-deferral is not wrapped twice


def test_settled_pod_trigger_holds_the_pod_triggers_event(monkeypatch: pytest.MonkeyPatch) -> None:
    async def finished_at_once(self: KubernetesPodTrigger):
        yield {"status": "success", "name": self.pod_name}

    # KPO's run() needs a cluster; what is under test is only the hold around whatever it yields.
    monkeypatch.setattr(KubernetesPodTrigger, "run", finished_at_once)
    trigger = SettledPodTrigger.wrapping(_pod_trigger(), _in(0.6))
    started = time.monotonic()
    event = asyncio.run(anext(trigger.run()))
    assert event == {"status": "success", "name": "zdtp-w1"}
    assert time.monotonic() - started >= 0.55
