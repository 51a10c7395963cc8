"""ZdtpRolloutTrigger: wait for an incremental worker's Deployment to finish rolling out.

Fails on ``ProgressDeadlineExceeded`` with the reasons its pods give (CrashLoopBackOff,
Unschedulable...). ``on_kill`` acts on the Deployment because a killed apply task means the user
does not want this rollout running unattended: ``scale_to_zero`` (default; keeps the objects and
the replication slot's position for inspection), ``delete`` (Foreground, owned Secret too) or
``keep``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import TriggerEvent

from zdtp_provider.k8s.labels import selector_string
from zdtp_provider.k8s.status import pod_waiting_reasons, rollout_status
from zdtp_provider.triggers._base import ON_KILL_TIMEOUT, ZdtpTriggerBase

ON_KILL_ACTIONS = ("scale_to_zero", "delete", "keep")


class ZdtpRolloutTrigger(ZdtpTriggerBase):
    def __init__(self, *, on_kill_action: str = "scale_to_zero", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if on_kill_action not in ON_KILL_ACTIONS:
            raise ValueError(f"on_kill_action: must be one of {ON_KILL_ACTIONS}, got {on_kill_action!r}")
        self.on_kill_action = on_kill_action

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {**self._common_kwargs(), "on_kill_action": self.on_kill_action},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            try:
                event = await self.call(rollout_event, self.hook, self.name, self.namespace)
            except Exception as exc:
                event = {"status": "error", "message": str(exc)}
            if event is not None:
                yield TriggerEvent({"name": self.name, "namespace": self.namespace, **event})
                return
            await asyncio.sleep(self.poll_interval)

    async def on_kill(self) -> None:
        if self.on_kill_action == "keep":
            return
        self.log.info("Task killed: %s Deployment %s/%s", self.on_kill_action, self.namespace, self.name)
        if self.on_kill_action == "delete":
            call = self.call(self.hook.delete, kind="Deployment", name=self.name, namespace=self.namespace)
        else:
            call = self.call(self.hook.scale, self.name, self.namespace, 0)
        await asyncio.wait_for(call, timeout=ON_KILL_TIMEOUT)


def rollout_event(hook, name: str, namespace: str) -> dict[str, Any] | None:
    """One poll: ``None`` while in progress, else a success/failed event dict (sync, for threads)."""
    dep = hook.read_deployment(name, namespace)
    if dep is None:
        return {"status": "error", "message": f"Deployment {namespace}/{name} is gone"}
    state = rollout_status(dep)
    if state.done:
        return {"status": "success", "message": state.message, "generation": dep.metadata.generation}
    if not state.failed:
        return None
    return {"status": "failed", "message": f"{state.message}; {failure_detail(hook, dep)}"}


def failure_detail(hook, dep) -> str:
    """Why the pods do not become available: waiting reasons and recent warning events."""
    selector = selector_string(dep.spec.selector.match_labels or {})
    pods = hook.list_pods(dep.metadata.namespace, selector)
    reasons = pod_waiting_reasons(pods)
    for pod in pods[:3]:
        events = hook.object_events(namespace=pod.metadata.namespace, kind="Pod", name=pod.metadata.name)
        reasons.extend(e for e in events[-3:] if e.startswith("Warning"))
    return "; ".join(reasons) or "no pod reports a reason"
