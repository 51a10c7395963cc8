"""``deploy/`` is a kustomize base: it renders with the dev cluster's own kubectl, the namespace is a
parameter (an overlay moves every object, the Namespace and the RoleBinding's subject), and the
output is accepted by the dev apiserver with a server-side dry-run (the monitoring CRDs, minimal
stand-ins from ``monitoring-crds.yaml``, are applied first)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.fixtures.cluster import Cluster

pytestmark = [pytest.mark.cluster]

DEPLOY = REPO / "deploy"
CRDS = Path(__file__).with_name("monitoring-crds.yaml")
KINDS = {"Namespace", "ServiceAccount", "Role", "RoleBinding", "PodMonitor", "PrometheusRule", "ConfigMap"}


def kubectl_binary() -> str:
    """The kubectl built with the dev cluster (dev/cluster/build.sh), same version as its apiserver."""
    versions = dict(
        line.split("=", 1)
        for line in (REPO / "dev/cluster/versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    cache = Path(os.environ.get("ZDTP_CACHE", Path.home() / ".cache/zdtp"))
    folder = f"k8s-{versions['K8S_VERSION']}_etcd-{versions['ETCD_VERSION']}_kwok-{versions['KWOK_VERSION']}"
    path = cache / folder / "bin" / "kubectl"
    assert path.exists(), f"{path} missing: the dev cluster build (make cluster-up) provides it"
    return str(path)


def kubectl(cluster: Cluster | None, *args: str, stdin: str | None = None) -> str:
    argv = [kubectl_binary(), *args]
    if cluster is not None:
        argv[1:1] = ["--kubeconfig", str(cluster.kubeconfig)]
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr[-2000:]}"
    return proc.stdout


def render(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(kubectl(None, "kustomize", str(path))) if d]


def overlay(tmp_path: Path, namespace: str) -> Path:
    folder = tmp_path / "overlay"
    folder.mkdir()
    (folder / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": namespace,
                "resources": [os.path.relpath(DEPLOY, folder)],
            }
        )
    )
    return folder


def test_base_renders_every_part_in_the_default_namespace() -> None:
    docs = render(DEPLOY)
    assert {d["kind"] for d in docs} == KINDS
    for doc in docs:
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == "zdtp"
            assert doc["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        else:
            assert doc["metadata"]["namespace"] == "zdtp", doc["metadata"]
    dashboard = next(d for d in docs if d["kind"] == "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "zdtp-cdc.json" in dashboard["data"]


def test_overlay_namespace_applies_with_server_side_dry_run(
    cluster: Cluster, namespace: str, tmp_path
) -> None:
    docs = render(overlay(tmp_path, namespace))
    for doc in docs:
        where = doc["metadata"]["name"] if doc["kind"] == "Namespace" else doc["metadata"]["namespace"]
        assert where == namespace, doc["metadata"]
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    assert [s["namespace"] for s in binding["subjects"]] == [namespace]

    kubectl(cluster, "apply", "--server-side", "--field-manager=zdtp-tests", "-f", str(CRDS))
    kubectl(
        cluster,
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/podmonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
    )
    out = kubectl(
        cluster,
        "apply",
        "--server-side",
        "--dry-run=server",
        "--field-manager=zdtp-tests",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(docs),
    )
    applied = {line.split()[0].split("/")[0] for line in out.splitlines() if line.strip()}
    expected = {
        "namespace",
        "serviceaccount",
        "role.rbac.authorization.k8s.io",
        "rolebinding.rbac.authorization.k8s.io",
        "podmonitor.monitoring.coreos.com",
        "prometheusrule.monitoring.coreos.com",
        "configmap",
    }
    assert applied == expected, out


def test_overlay_without_prometheus_operator_drops_the_crd_kinds(tmp_path) -> None:
    """The overlay docs/install.md gives for clusters without Prometheus Operator."""
    folder = overlay(tmp_path, "data-sync")
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    kustomization["patches"] = [
        {
            "patch": "$patch: delete\napiVersion: monitoring.coreos.com/v1\n"
            f"kind: {kind}\nmetadata: {{name: {name}}}"
        }
        for kind, name in (("PodMonitor", "zdtp-workers"), ("PrometheusRule", "zdtp-cdc"))
    ]
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    kinds = {d["kind"] for d in render(folder)}
    assert kinds == KINDS - {"PodMonitor", "PrometheusRule"}
