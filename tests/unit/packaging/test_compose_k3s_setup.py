"""The compose stack's k3s set-up script: kubeconfig rewrite and the manifests it applies.

The script's I/O half (waiting for k3s, applying) needs the running stack; these tests cover the
pure half it relies on, plus a check that its Namespace passes the provider's Pod Security level.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def setup_mod():
    spec = importlib.util.spec_from_file_location("k3s_setup", REPO / "deploy/compose/k3s_setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


K3S_KUBECONFIG = """\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EK
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Q0VSVAo=
    client-key-data: S0VZCg==
"""


def test_kubeconfig_server_is_rewritten_to_the_service_name(setup_mod):
    out = yaml.safe_load(setup_mod.rewrite_kubeconfig(K3S_KUBECONFIG, server_host="k3s"))
    assert out["clusters"][0]["cluster"]["server"] == "https://k3s:6443"
    # Everything else, credentials included, is carried over unchanged.
    original = yaml.safe_load(K3S_KUBECONFIG)
    original["clusters"][0]["cluster"]["server"] = "https://k3s:6443"
    assert out == original


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("https://localhost:6443", "https://k3s:6443"),
        ("https://127.0.0.1", "https://k3s"),
        ("https://api.example.test:6443", "https://api.example.test:6443"),
    ],
)
def test_only_loopback_servers_are_rewritten(setup_mod, server, expected):
    text = K3S_KUBECONFIG.replace("https://127.0.0.1:6443", server)
    out = yaml.safe_load(setup_mod.rewrite_kubeconfig(text, server_host="k3s"))
    assert out["clusters"][0]["cluster"]["server"] == expected


def test_rewrite_rejects_a_file_that_is_not_a_kubeconfig(setup_mod):
    with pytest.raises(ValueError, match="no clusters"):
        setup_mod.rewrite_kubeconfig("just: text\n", server_host="k3s")


def test_namespace_enforces_restricted_pod_security(setup_mod):
    ns = setup_mod.namespace_manifest("zdtp-demo")
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert ns["metadata"]["name"] == "zdtp-demo"


def test_database_service_and_endpoint_slice_point_at_the_container(setup_mod):
    service, slice_ = setup_mod.database_manifests(
        name="source-db", address="172.18.0.5", port=5432, namespace="zdtp"
    )
    assert service["kind"] == "Service" and "selector" not in service["spec"]
    assert service["spec"]["ports"][0]["port"] == 5432
    assert slice_["kind"] == "EndpointSlice" and slice_["addressType"] == "IPv4"
    assert slice_["metadata"]["labels"]["kubernetes.io/service-name"] == "source-db"
    assert slice_["metadata"]["namespace"] == service["metadata"]["namespace"] == "zdtp"
    assert slice_["endpoints"][0]["addresses"] == ["172.18.0.5"]
    assert slice_["ports"][0]["name"] == service["spec"]["ports"][0]["name"]


def test_manifests_are_valid_kubernetes_objects(setup_mod):
    """Deserialise into the kubernetes client's models: catches misspelled fields and kinds."""
    from kubernetes import client

    api = client.ApiClient()

    class _Resp:
        def __init__(self, obj):
            import json

            self.data = json.dumps(obj)

    ns = setup_mod.namespace_manifest("zdtp")
    assert api.deserialize(_Resp(ns), "V1Namespace").metadata.name == "zdtp"
    service, slice_ = setup_mod.database_manifests(
        name="target-db", address="fd00::5", port=5432, namespace="x"
    )
    assert api.deserialize(_Resp(service), "V1Service").spec.ports[0].port == 5432
    parsed = api.deserialize(_Resp(slice_), "V1EndpointSlice")
    assert parsed.address_type == "IPv6" and parsed.endpoints[0].addresses == ["fd00::5"]


def test_database_hosts_parse(setup_mod):
    assert setup_mod.parse_hosts("source-db:5432 target-db:5433,other") == [
        ("source-db", 5432),
        ("target-db", 5433),
        ("other", 5432),
    ]


def test_missing_apply_files_are_skipped(setup_mod, tmp_path):
    present = tmp_path / "rbac.yaml"
    present.write_text("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\n---\n")
    docs = setup_mod.load_documents([tmp_path / "namespace.yaml", present])
    assert docs == [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "a"}}]


def test_repository_deploy_manifests_load(setup_mod):
    """What k3s-setup will apply from deploy/*.yaml parses into objects with kind and name."""
    # kustomization.yaml is kustomize's build file, not an object (deploy/ is a kustomize base).
    files = sorted(p for p in (REPO / "deploy").glob("*.yaml") if p.name != "kustomization.yaml")
    if not files:
        pytest.skip("deploy/*.yaml not written yet")
    for doc in setup_mod.load_documents(files):
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), doc
