"""ZdtpJobTrigger: wait for a Job to finish; ``on_kill`` deletes it (Foreground).

The provider's KubernetesJobTrigger has no ``on_kill``, so killing a deferred Job task leaves the
Job running (DESIGN.md). Foreground propagation makes the delete wait for the Job's pods and the
owned credentials Secret, so nothing of the run outlives the kill.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import TriggerEvent

from zdtp_provider.k8s.status import job_failure_message, job_phase
from zdtp_provider.triggers._base import ON_KILL_TIMEOUT, ZdtpTriggerBase


def job_event(hook, name: str, namespace: str) -> dict[str, Any] | None:
    """One poll: ``None`` while the Job runs, else its outcome (sync, for threads)."""
    job = hook.read_job(name, namespace)
    if job is None:
        return {"status": "error", "message": f"Job {namespace}/{name} is gone"}
    phase = job_phase(job)
    if phase == "running":
        return None
    return {"status": phase, "message": job_failure_message(job) or "Job complete"}


class ZdtpJobTrigger(ZdtpTriggerBase):
    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent(await self.poll(lambda: job_event(self.hook, self.name, self.namespace)))

    async def on_kill(self) -> None:
        """The user killed the deferred task: delete the Job, its pods and its Secret."""
        self.log.info("Task killed: deleting Job %s/%s (Foreground)", self.namespace, self.name)
        await asyncio.wait_for(
            self.call(self.hook.delete, kind="Job", name=self.name, namespace=self.namespace),
            timeout=ON_KILL_TIMEOUT,
        )
