"""Health of an incremental worker, read from the API: one function for the sensor and its trigger.

Availability and restart counts come from the Deployment and its pods; the lag, optionally, from
the worker's own ``/metrics`` (``zdtp_cdc_lag_seconds``) through the API server's pod proxy, so
no network path to the pod is needed. It only reads.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from zdtp_provider.k8s.status import pod_restarts, pod_waiting_reasons

log = logging.getLogger(__name__)

_LAG = re.compile(r"^zdtp_cdc_lag_seconds(?:\{[^}]*\})?\s+([0-9.eE+-]+)\s*$", re.MULTILINE)


def parse_lag_seconds(metrics: str) -> float | None:
    match = _LAG.search(metrics or "")
    return float(match.group(1)) if match else None


def read_lag(hook, pod: str, namespace: str, port: int) -> float | None:
    try:
        text = hook.core_v1_client.connect_get_namespaced_pod_proxy_with_path(
            f"{pod}:{port}", namespace, "metrics"
        )
    except Exception as exc:
        log.warning("could not read /metrics of %s: %s", pod, exc)
        return None
    return parse_lag_seconds(text)


def stream_health(
    hook,
    *,
    name: str,
    namespace: str,
    max_restarts: int,
    max_lag_seconds: float | None,
    health_port: int,
) -> dict[str, Any]:
    """The health report: ``healthy`` plus the reasons it is not, restarts, lag."""
    dep = hook.read_deployment(name, namespace)
    if dep is None:
        return {"name": name, "namespace": namespace, "healthy": False, "reasons": ["Deployment not found"]}
    pods = hook.list_pods(namespace, dep.spec.selector.match_labels or {})
    available = (dep.status.available_replicas or 0) if dep.status else 0
    restarts = {p.metadata.name: pod_restarts(p) for p in pods}
    reasons = []
    if available < 1:
        reasons.append("no available replica")
    crash = [n for n, r in restarts.items() if r >= max_restarts]
    if crash:
        reasons.append(f"crash-looping (restarts ≥ {max_restarts}): {', '.join(crash)}")
    reasons.extend(pod_waiting_reasons(pods))
    lag = None
    if max_lag_seconds is not None and pods:
        lag = read_lag(hook, pods[0].metadata.name, namespace, health_port)
        if lag is None:
            reasons.append("lag unknown (no zdtp_cdc_lag_seconds metric)")
        elif lag > max_lag_seconds:
            reasons.append(f"lagging {lag:.1f}s > {max_lag_seconds:g}s")
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
