"""Triggers over an incremental worker's Deployment: rollout, stop, removal, health.

:class:`ZdtpRolloutTrigger` fails on ``ProgressDeadlineExceeded``, or as soon as a worker pod has
restarted ``ROLLOUT_MAX_RESTARTS`` times, with the reasons its pods give (CrashLoopBackOff, the
worker's termination message, Unschedulable...). Its ``on_kill`` acts on the Deployment because a killed
apply task means the user does not want this rollout running unattended: ``scale_to_zero``
(default; keeps the objects and the replication slot's position), ``delete`` (Foreground, owned
Secret too) or ``keep``. :class:`ZdtpDeploymentStateTrigger` waits for a stop, a removal or a
healthy stream (Stop/Delete operators and the sensor) and never acts on kill.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import TriggerEvent

from zdtp_provider.k8s.labels import selector_string
from zdtp_provider.k8s.status import pod_last_exits, pod_restarts, pod_waiting_reasons, rollout_status
from zdtp_provider.triggers._base import ON_KILL_TIMEOUT, ZdtpTriggerBase
from zdtp_provider.triggers.health import stream_health

ON_KILL_ACTIONS = ("scale_to_zero", "delete", "keep")
STATES = ("stopped", "gone", "healthy")


# A worker restarted this often during its rollout is failing, not starting: say why now instead
# of after the progress deadline (the Deployment keeps retrying; the task reports the reason).
ROLLOUT_MAX_RESTARTS = 3


def rollout_event(hook, name: str, namespace: str) -> dict[str, Any] | None:
    """One poll: ``None`` while in progress, else a success/failed event dict (sync, for threads)."""
    dep = hook.read_deployment(name, namespace)
    if dep is None:
        return {"status": "error", "message": f"Deployment {namespace}/{name} is gone"}
    state = rollout_status(dep)
    if state.done:
        return {"status": "success", "message": state.message, "generation": dep.metadata.generation}
    if state.failed:
        return {"status": "failed", "message": f"{state.message}; {failure_detail(hook, dep)}"}
    # Only the pods of this rollout: an old pod's restarts (a stream that restarted a few times
    # over weeks, or the crash the new template fixes) say nothing about the new template. So
    # only once the controller saw this generation and no old replica is left (Recreate).
    status = dep.status
    if status is None or (status.observed_generation or 0) < (dep.metadata.generation or 0):
        return None
    if (status.replicas or 0) > (status.updated_replicas or 0):
        return None
    pods = [
        p
        for p in hook.list_pods(namespace, selector_string(dep.spec.selector.match_labels or {}))
        if p.metadata.deletion_timestamp is None
    ]
    restarts = max((pod_restarts(p) for p in pods), default=0)
    if restarts >= ROLLOUT_MAX_RESTARTS:
        return {
            "status": "failed",
            "message": f"rollout failed: the worker restarted {restarts} times; {failure_detail(hook, dep)}",
        }
    return None


def failure_detail(hook, dep) -> str:
    """Why the pods do not become available: waiting reasons and recent warning events."""
    selector = selector_string(dep.spec.selector.match_labels or {})
    pods = hook.list_pods(dep.metadata.namespace, selector)
    reasons = pod_waiting_reasons(pods) + pod_last_exits(pods)
    for pod in pods[:3]:
        events = hook.object_events(namespace=pod.metadata.namespace, kind="Pod", name=pod.metadata.name)
        reasons.extend(e for e in events[-3:] if e.startswith("Warning"))
    return "; ".join(reasons) or "no pod reports a reason"


def state_event(
    hook, name: str, namespace: str, state: str, selector: Mapping[str, str] | None, health: Mapping
) -> dict[str, Any] | None:
    """One poll for ``state``: ``stopped`` (no pod left), ``gone`` (Deployment and pods gone) or
    ``healthy`` (see :func:`stream_health`); ``None`` while not there yet."""
    if state == "healthy":
        report = stream_health(hook, name=name, namespace=namespace, **health)
        return {"status": "success", "report": report} if report["healthy"] else None
    dep = hook.read_deployment(name, namespace)
    if state == "stopped" and dep is None:
        return {"status": "error", "message": f"Deployment {namespace}/{name} not found"}
    if state == "gone" and dep is not None:
        return None
    if state == "stopped" and not _scaled_down(dep):
        # No pod listed yet is not "stopped" while the controller has not acted on the scale to
        # 0: a rollout in flight can still create its new ReplicaSet's pod after that list.
        return None
    if selector and hook.list_pods(namespace, dict(selector)):
        return None
    return {"status": "success", "message": f"{namespace}/{name} {state}"}


def _scaled_down(dep: Any) -> bool:
    """The Deployment controller has seen the latest spec and counts no replica (of any RS)."""
    status = dep.status
    if status is None or (status.observed_generation or 0) < (dep.metadata.generation or 0):
        return False
    return not (status.replicas or 0)


class ZdtpRolloutTrigger(ZdtpTriggerBase):
    def __init__(self, *, on_kill_action: str = "scale_to_zero", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if on_kill_action not in ON_KILL_ACTIONS:
            raise ValueError(f"on_kill_action: must be one of {ON_KILL_ACTIONS}, got {on_kill_action!r}")
        self.on_kill_action = on_kill_action

    def extra_kwargs(self) -> dict[str, Any]:
        return {"on_kill_action": self.on_kill_action}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent(await self.poll(lambda: rollout_event(self.hook, self.name, self.namespace)))

    async def on_kill(self) -> None:
        if self.on_kill_action == "keep":
            return
        self.log.info("Task killed: %s Deployment %s/%s", self.on_kill_action, self.namespace, self.name)
        if self.on_kill_action == "delete":
            call = self.call(self.hook.delete, kind="Deployment", name=self.name, namespace=self.namespace)
        else:
            call = self.call(self.hook.scale, self.name, self.namespace, 0)
        await asyncio.wait_for(call, timeout=ON_KILL_TIMEOUT)


class ZdtpDeploymentStateTrigger(ZdtpTriggerBase):
    """Wait until the Deployment reaches ``state``; with ``timeout`` seconds, fail after that."""

    def __init__(
        self,
        *,
        state: str,
        selector: Mapping[str, str] | None = None,
        health: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if state not in STATES:
            raise ValueError(f"state: must be one of {STATES}, got {state!r}")
        self.state = state
        self.selector = dict(selector) if selector else None
        self.health = dict(health or {})
        self.timeout = timeout

    def extra_kwargs(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "selector": self.selector,
            "health": self.health,
            "timeout": self.timeout,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        def check() -> dict[str, Any] | None:
            return state_event(self.hook, self.name, self.namespace, self.state, self.selector, self.health)

        try:
            event = await asyncio.wait_for(self.poll(check), timeout=self.timeout)
        except TimeoutError:
            event = {
                "name": self.name,
                "namespace": self.namespace,
                "status": "timeout",
                "message": f"timed out after {self.timeout}s waiting for {self.namespace}/{self.name} "
                f"to be {self.state}",
            }
        yield TriggerEvent(event)
