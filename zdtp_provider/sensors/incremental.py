"""IncrementalSyncSensor: is the CDC worker healthy — available, not crash-looping, not lagging?

Health comes from :func:`zdtp_provider.triggers.health.stream_health` (Deployment availability,
container restart counts, optionally ``zdtp_cdc_lag_seconds`` through the pod proxy). Deferrable
(default: ``[operators] default_deferrable``): the triggerer polls the same function until the
worker is healthy. It only reads.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue
from airflow.sdk.exceptions import AirflowException

from zdtp_provider.k8s.names import validate_dns_label
from zdtp_provider.operators._inputs import as_airflow_error, default_deferrable
from zdtp_provider.operators._kube_operator import ZdtpKubeOperator
from zdtp_provider.triggers.deployment import ZdtpDeploymentStateTrigger
from zdtp_provider.triggers.health import parse_lag_seconds, stream_health
from zdtp_provider.workload import deployment_name

__all__ = ["IncrementalSyncSensor", "parse_lag_seconds"]


class IncrementalSyncSensor(BaseSensorOperator, ZdtpKubeOperator):
    """Succeeds when the incremental worker is healthy; pushes the health report.

    :param max_restarts: a pod restarted this often (or more) counts as crash-looping.
    :param max_lag_seconds: also require ``zdtp_cdc_lag_seconds`` below this (reads /metrics).
    :param fail_on_crash_loop: fail the task at once instead of poking on (not when deferred).
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = (*ZdtpKubeOperator.template_fields, "name", "task")

    def __init__(
        self,
        *,
        name: str | None = None,
        task: str | None = None,
        worker: str = "w0",
        max_restarts: int = 3,
        max_lag_seconds: float | None = None,
        health_port: int = 8080,
        fail_on_crash_loop: bool = False,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.task = task
        self.worker = worker
        self.max_restarts = max_restarts
        self.max_lag_seconds = max_lag_seconds
        self.health_port = health_port
        self.fail_on_crash_loop = fail_on_crash_loop
        self.deferrable = default_deferrable() if deferrable is None else deferrable

    def _target(self) -> tuple[str, str]:
        if not self.name and not self.task:
            raise AirflowException("name: give the Deployment name or the sync task")
        with as_airflow_error():
            name = validate_dns_label(self.name or deployment_name(self.task, self.worker), field="name")
        return name, self.resolved_namespace()

    def _health_args(self) -> dict[str, Any]:
        return {
            "max_restarts": self.max_restarts,
            "max_lag_seconds": self.max_lag_seconds,
            "health_port": self.health_port,
        }

    def health(self) -> dict[str, Any]:
        name, namespace = self._target()
        return stream_health(self.hook, name=name, namespace=namespace, **self._health_args())

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        report = self.health()
        if report["healthy"]:
            return report
        self.defer(
            trigger=ZdtpDeploymentStateTrigger(
                state="healthy",
                health=self._health_args(),
                **self.trigger_kwargs(name=report["name"], namespace=report["namespace"]),
            ),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        if event.get("status") != "success":
            raise AirflowException(event.get("message") or f"waiting for health failed: {event}")
        return event["report"]

    def poke(self, context: Context) -> PokeReturnValue:
        report = self.health()
        if not report["healthy"]:
            self.log.info("%s is unhealthy: %s", report["name"], "; ".join(report["reasons"]))
            if self.fail_on_crash_loop and report.get("crash_looping"):
                raise AirflowException(f"{report['name']}: " + "; ".join(report["reasons"]))
        return PokeReturnValue(is_done=report["healthy"], xcom_value=report)
