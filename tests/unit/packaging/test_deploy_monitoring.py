"""The shipped alerts and dashboard query only metrics the worker really exports, and select the
pods and port zdtp really builds. (Rendering and a server dry-run: tests/integration/deploy.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from zdtp_provider.k8s.labels import MANAGED_BY
from zdtp_worker.incremental.health import Metrics

REPO = Path(__file__).resolve().parents[3]
MONITORING = REPO / "deploy" / "monitoring"
# Series from elsewhere: Prometheus' own scrape health and kube-state-metrics.
EXTERNAL = {"up", "kube_pod_container_status_waiting_reason"}
PROMQL_WORDS = {
    "max", "min", "sum", "by", "on", "and", "or", "rate", "increase", "resets", "label_replace",
    "group_left", "label_values", "namespace", "task", "pod",
}  # fmt: skip


def exported() -> set[str]:
    return set(re.findall(r"^(zdtp_\w+)\{", Metrics(task="t", slot="s").render(), re.M))


def used_metrics(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values and regexes are not metric names
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    names = set(re.findall(r"\b([a-z_][a-z0-9_]*)\b", expr))
    return {n for n in names if n.startswith(("zdtp_", "up", "kube_"))} - PROMQL_WORDS


def rule_exprs() -> list[str]:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    return [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]


def dashboard_exprs() -> list[str]:
    dash = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dash["panels"] for t in panel["targets"]]
    exprs += [v["definition"] for v in dash["templating"]["list"] if v.get("definition")]
    return exprs


def test_alerts_and_dashboard_use_only_exported_metrics() -> None:
    known = exported() | EXTERNAL
    assert {"zdtp_cdc_lag_seconds", "zdtp_cdc_streaming", "zdtp_cdc_slot_retained_wal_bytes"} <= known
    for expr in rule_exprs() + dashboard_exprs():
        unknown = used_metrics(expr) - known
        assert not unknown, f"{unknown} in {expr!r} is not a metric the worker exports"


def test_rules_cover_stream_down_lag_wal_and_crash_loop() -> None:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    alerts = {r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]}
    assert {
        "ZdtpStreamDown",
        "ZdtpStreamLagHigh",
        "ZdtpSlotRetainedWalHigh",
        "ZdtpWorkerCrashLooping",
    } <= alerts


def test_pod_monitor_selects_incremental_worker_pods_by_their_labels_and_port_name() -> None:
    from zdtp_provider.k8s.labels import identity_labels

    monitor = yaml.safe_load((MONITORING / "podmonitor.yaml").read_text())
    selector = monitor["spec"]["selector"]["matchLabels"]
    labels = identity_labels(task="shop", worker="w0", component="incremental-sync")
    assert selector.items() <= labels.items()
    assert selector["app.kubernetes.io/managed-by"] == MANAGED_BY
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]


def test_rendered_deployment_exposes_the_port_the_pod_monitor_scrapes() -> None:
    """The PodMonitor names a port; the incremental worker's container must carry that name on the
    spec's health port (which serves /metrics), whatever number the spec chose."""
    from zdtp_provider.workload import WorkloadOptions, render_deployment
    from zdtp_worker.contract.spec import WorkerSpec

    monitor = yaml.safe_load((MONITORING / "podmonitor.yaml").read_text())
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    spec = WorkerSpec(
        mode="incremental",
        task="shop",
        run_id="r1",
        tables=[{"source": "public.orders"}],
        incremental={"health_port": 9187},
    )
    rendered = render_deployment(WorkloadOptions(image="zdtp-worker:test"), spec, namespace="ns")
    pod = rendered.body()["spec"]["template"]
    [container] = pod["spec"]["containers"]
    assert {"name": endpoint["port"], "containerPort": 9187, "protocol": "TCP"} in container["ports"]
    assert container["readinessProbe"]["httpGet"]["port"] == 9187
    assert pod["metadata"]["labels"].items() >= monitor["spec"]["selector"]["matchLabels"].items()
