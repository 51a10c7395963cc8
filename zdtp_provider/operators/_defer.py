"""Defer only while there is something to wait for.

A deferral whose trigger fires at once (the workload finished before the task deferred) exposes
Airflow 3's stale-executor-event race (apache/airflow#66374, #67287, #71580, #72716): the trigger
requeues the task instance before the scheduler has processed the executor's "success" for the
deferring process, and the scheduler then fails the requeued try ("finished with state success,
but the task instance's state attribute is queued"). Airflow 3.3.2 only guards the SCHEDULED
state. The finished workload's result is lost with it.

So every zdtp wait reads the workload's state once, right before deferring, with the same
function its trigger polls; an outcome already there is handled in-process by the method the
trigger would have resumed, and the task never defers. What remains is the window between that
read and the deferral reaching the scheduler (a workload finishing in that gap); for it, the
trigger holds its event until the deferral has settled (:mod:`zdtp_provider.triggers.settle`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.triggers.base import BaseTrigger

from zdtp_provider.triggers.settle import SettlingTrigger, settle_deadline

Check = Callable[[], "dict[str, Any] | None"]


def defer_unless_done(
    op: BaseOperator,
    context: Context,
    *,
    check: Check,
    trigger: BaseTrigger,
    method_name: str,
    where: tuple[str, str],
    timeout: dt.timedelta | None = None,
) -> Any:
    """Defer to ``trigger`` unless ``check()`` (the trigger's own poll) already has its event.

    ``where`` is the (name, namespace) the trigger adds to its event. A failing read defers as
    before: the trigger then reports what it finds.
    """
    try:
        event = check()
    except Exception as exc:
        op.log.warning("Could not read the state before deferring (%s): deferring", exc)
        event = None
    if event is None:
        if isinstance(trigger, SettlingTrigger):
            trigger.not_before = settle_deadline()
        op.defer(trigger=trigger, method_name=method_name, timeout=timeout)
    name, namespace = where
    op.log.info(
        "%s/%s already finished (%s) before the task deferred: completing in-process instead of "
        "deferring (avoids Airflow's stale-executor-event race, apache/airflow#66374)",
        namespace,
        name,
        event.get("status"),
    )
    return getattr(op, method_name)(context, {"name": name, "namespace": namespace, **event})
