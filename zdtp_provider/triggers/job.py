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


class ZdtpJobTrigger(ZdtpTriggerBase):
    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", self._common_kwargs()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            try:
                job = await self.call(self.hook.read_job, self.name, self.namespace)
            except Exception as exc:
                yield TriggerEvent({"status": "error", "name": self.name, "message": str(exc)})
                return
            if job is None:
                yield TriggerEvent(
                    {
                        "status": "error",
                        "name": self.name,
                        "message": f"Job {self.namespace}/{self.name} is gone",
                    }
                )
                return
            phase = job_phase(job)
            if phase != "running":
                yield TriggerEvent(
                    {
                        "status": phase,
                        "name": self.name,
                        "namespace": self.namespace,
                        "message": job_failure_message(job) or "Job complete",
                    }
                )
                return
            await asyncio.sleep(self.poll_interval)

    async def on_kill(self) -> None:
        """The user killed the deferred task: delete the Job, its pods and its Secret."""
        self.log.info("Task killed: deleting Job %s/%s (Foreground)", self.namespace, self.name)
        await asyncio.wait_for(
            self.call(self.hook.delete, kind="Job", name=self.name, namespace=self.namespace),
            timeout=ON_KILL_TIMEOUT,
        )
