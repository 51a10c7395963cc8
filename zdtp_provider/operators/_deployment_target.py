"""Stop, resume and delete an existing incremental worker's Deployment (named, or by task/worker).

Each acts once, then waits — in the triggerer when deferrable (default: ``[operators]
default_deferrable``), else in-process — for the state it asked for: no pod left (stop), the
rollout Available (resume), Deployment and pods gone (delete). The waits never act on kill:
the action already happened and is what the user asked for.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowException

from zdtp_provider.k8s.names import validate_dns_label
from zdtp_provider.operators._defer import defer_unless_done
from zdtp_provider.operators._inputs import as_airflow_error, default_deferrable
from zdtp_provider.operators._kube_operator import ZdtpKubeOperator
from zdtp_provider.triggers.deployment import (
    ZdtpDeploymentStateTrigger,
    ZdtpRolloutTrigger,
    rollout_event,
    state_event,
)
from zdtp_provider.workload import deployment_name


class DeploymentTargetOperator(ZdtpKubeOperator):
    """Acts on an existing incremental Deployment named directly or by task/worker."""

    template_fields: Sequence[str] = (*ZdtpKubeOperator.template_fields, "name", "task")

    def __init__(
        self,
        *,
        name: str | None = None,
        task: str | None = None,
        worker: str = "w0",
        timeout: float = 300,
        deferrable: bool | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.name = name
        self.task = task
        self.worker = worker
        self.timeout = timeout
        self.deferrable = default_deferrable() if deferrable is None else deferrable

    def target(self) -> tuple[str, str]:
        if not self.name and not self.task:
            raise AirflowException("name: give the Deployment name or the sync task")
        name = self.name or deployment_name(self.task, self.worker)  # type: ignore[arg-type]
        with as_airflow_error():
            validate_dns_label(name, field="name")
        return name, self.resolved_namespace()

    def wait_for(self, check: Callable[[], dict[str, Any] | None], what: str, trigger: Any) -> None:
        """Defer to ``trigger``, or poll ``check`` (an event dict when done) up to ``timeout``."""
        if self.deferrable:
            # Already there (stopping a stopped worker...): concluded here, no deferral.
            defer_unless_done(
                self,
                {},  # execute_complete reads no context
                check=check,
                trigger=trigger,
                method_name="execute_complete",
                where=(trigger.name, trigger.namespace),
                timeout=dt.timedelta(seconds=self.timeout),
            )
            return
        deadline = time.monotonic() + self.timeout
        while (event := check()) is None:
            if time.monotonic() > deadline:
                raise AirflowException(f"timed out after {self.timeout}s waiting for {what}")
            time.sleep(self.poll_interval)
        self.execute_complete({}, event)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        if event.get("status") != "success":
            raise AirflowException(event.get("message") or f"waiting failed: {event}")
        self.log.info("%s", event.get("message", "done"))


class StopIncrementalSyncOperator(DeploymentTargetOperator):
    """Scale the worker to 0 and wait until its pod is gone (the slot keeps its position)."""

    def execute(self, context: Context) -> None:
        name, namespace = self.target()
        dep = self.hook.read_deployment(name, namespace)
        if dep is None:
            raise AirflowException(f"Deployment {namespace}/{name} not found")
        self.hook.scale(name, namespace, 0)
        selector = dict(dep.spec.selector.match_labels or {})
        self.wait_for(
            lambda: state_event(self.hook, name, namespace, "stopped", selector, {}),
            f"the pods of {namespace}/{name} to stop",
            ZdtpDeploymentStateTrigger(
                state="stopped",
                selector=selector,
                timeout=self.timeout,
                **self.trigger_kwargs(name=name, namespace=namespace),
            ),
        )


class ResumeIncrementalSyncOperator(DeploymentTargetOperator):
    """Scale the worker back to 1 and wait until it is Available."""

    def execute(self, context: Context) -> None:
        name, namespace = self.target()
        self.hook.scale(name, namespace, 1)

        def available() -> dict[str, Any] | None:
            event = rollout_event(self.hook, name, namespace)
            if event and event["status"] != "success":
                event = {**event, "message": f"Deployment {namespace}/{name}: {event['message']}"}
            return event

        self.wait_for(
            available,
            f"{namespace}/{name} to become available",
            ZdtpRolloutTrigger(on_kill_action="keep", **self.trigger_kwargs(name=name, namespace=namespace)),
        )


class DeleteIncrementalSyncOperator(DeploymentTargetOperator):
    """Delete the Deployment (Foreground) and make sure no owned object is left behind."""

    def execute(self, context: Context) -> None:
        name, namespace = self.target()
        dep = self.hook.read_deployment(name, namespace)
        if dep is None:
            self.log.info("Deployment %s/%s does not exist: nothing to delete", namespace, name)
            return
        self.hook.delete(kind="Deployment", name=name, namespace=namespace)
        # Companions are garbage-collected through their owner reference; remove any whose
        # adoption never happened (a crash between apply and adopt).
        for kind in ("Secret", "ConfigMap"):
            self.hook.delete(kind=kind, name=name, namespace=namespace, propagation="Background")
        selector = dict(dep.spec.selector.match_labels or {})
        self.wait_for(
            lambda: state_event(self.hook, name, namespace, "gone", selector, {}),
            f"{namespace}/{name} and its pods to go",
            ZdtpDeploymentStateTrigger(
                state="gone",
                selector=selector,
                timeout=self.timeout,
                **self.trigger_kwargs(name=name, namespace=namespace),
            ),
        )
