"""IncrementalSyncSensor: is the CDC worker healthy — available, not crash-looping, not lagging?

Health comes from the API (Deployment availability, container restart counts) and, optionally,
the worker's own ``/metrics`` (``zdtp_cdc_lag_seconds``) read through the API server's pod proxy,
so the sensor needs no network path to the pod. It only reads.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue
from airflow.sdk.exceptions import AirflowException

from zdtp_provider.k8s.names import validate_dns_label
from zdtp_provider.k8s.status import pod_restarts, pod_waiting_reasons
from zdtp_provider.operators._base import ZdtpBaseOperator
from zdtp_provider.operators._common import check
from zdtp_provider.operators.incremental import deployment_name

_LAG = re.compile(r"^zdtp_cdc_lag_seconds(?:\{[^}]*\})?\s+([0-9.eE+-]+)\s*$", re.MULTILINE)


def parse_lag_seconds(metrics: str) -> float | None:
    match = _LAG.search(metrics or "")
    return float(match.group(1)) if match else None


class IncrementalSyncSensor(BaseSensorOperator, ZdtpBaseOperator):
    """Succeeds when the incremental worker is healthy; pushes the health report.

    :param max_restarts: a pod restarted this often (or more) counts as crash-looping.
    :param max_lag_seconds: also require ``zdtp_cdc_lag_seconds`` below this (reads /metrics).
    :param fail_on_crash_loop: fail the task at once instead of poking on.
    """

    template_fields: Sequence[str] = (*ZdtpBaseOperator.template_fields, "name", "task")

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

    def health(self) -> dict[str, Any]:
        if not self.name and not self.task:
            raise AirflowException("name: give the Deployment name or the sync task")
        name = check(validate_dns_label, self.name or deployment_name(self.task, self.worker), field="name")
        namespace = self.resolved_namespace()
        dep = self.hook.read_deployment(name, namespace)
        if dep is None:
            return {"name": name, "healthy": False, "reasons": ["Deployment not found"]}
        pods = self.hook.list_pods(namespace, dep.spec.selector.match_labels or {})
        available = (dep.status.available_replicas or 0) if dep.status else 0
        restarts = {p.metadata.name: pod_restarts(p) for p in pods}
        reasons = []
        if available < 1:
            reasons.append("no available replica")
        crash = [n for n, r in restarts.items() if r >= self.max_restarts]
        if crash:
            reasons.append(f"crash-looping (restarts ≥ {self.max_restarts}): {', '.join(crash)}")
        reasons.extend(pod_waiting_reasons(pods))
        lag = None
        if self.max_lag_seconds is not None and pods:
            lag = self._lag(pods[0].metadata.name, namespace)
            if lag is None:
                reasons.append("lag unknown (no zdtp_cdc_lag_seconds metric)")
            elif lag > self.max_lag_seconds:
                reasons.append(f"lagging {lag:.1f}s > {self.max_lag_seconds:g}s")
        return {
            "name": name,
            "namespace": namespace,
            "healthy": not reasons,
            "available_replicas": available,
            "restarts": restarts,
            "lag_seconds": lag,
            "reasons": reasons,
            "crash_looping": bool(crash),
        }

    def _lag(self, pod: str, namespace: str) -> float | None:
        try:
            text = self.hook.core_v1_client.connect_get_namespaced_pod_proxy_with_path(
                f"{pod}:{self.health_port}", namespace, "metrics"
            )
        except Exception as exc:
            self.log.warning("could not read /metrics of %s: %s", pod, exc)
            return None
        return parse_lag_seconds(text)

    def poke(self, context: Context) -> PokeReturnValue:
        report = self.health()
        if not report["healthy"]:
            self.log.info("%s is unhealthy: %s", report["name"], "; ".join(report["reasons"]))
            if self.fail_on_crash_loop and report.get("crash_looping"):
                raise AirflowException(f"{report['name']}: " + "; ".join(report["reasons"]))
        return PokeReturnValue(is_done=report["healthy"], xcom_value=report)
