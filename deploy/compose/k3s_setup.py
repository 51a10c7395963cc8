"""One-shot set-up of the compose stack's k3s cluster, run by the ``k3s-setup`` service.

k3s writes its admin kubeconfig for ``https://127.0.0.1:6443``, which from any other container
is that container itself. This script:

1. rewrites the server address to the k3s service name (``https://k3s:6443``; the serving
   certificate carries that name because k3s runs with ``--tls-san=k3s``) and writes the result
   where the Airflow services mount it (``/opt/airflow/kube/config``);
2. waits until the node is Ready;
3. creates the workers' namespaces with Pod Security ``restricted`` enforced, and applies the
   files in ``ZDTP_APPLY`` (the repository's ``deploy/rbac.yaml``, ``deploy/namespace.yaml``) when present;
4. makes the compose databases reachable from pods by name: a selector-less Service plus an
   EndpointSlice per database in each namespace, pointing at the database container's address.
   Pods cannot use Docker's embedded DNS (127.0.0.11 is not reachable from a pod's network
   namespace), so without this ``source-db`` would not resolve inside the cluster.

It runs in the compose Airflow image (Python and the kubernetes client are there) and is
idempotent: server-side apply, so every ``docker compose up`` re-runs it and refreshes the
database addresses (container IPs can change across restarts). The pure functions are unit
tested in tests/unit/packaging/test_compose_k3s_setup.py.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

FIELD_MANAGER = "zdtp-compose"
PSS_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}


def rewrite_kubeconfig(text: str, *, server_host: str) -> str:
    """Point every cluster whose server is on loopback at ``server_host`` (same scheme and port)."""
    config = yaml.safe_load(text)
    if not isinstance(config, dict) or not config.get("clusters"):
        raise ValueError("not a kubeconfig: no clusters")
    for entry in config["clusters"]:
        cluster = entry.get("cluster", {})
        parts = urlsplit(cluster.get("server", ""))
        if parts.hostname in {"127.0.0.1", "localhost", "::1", "0.0.0.0"}:
            netloc = f"{server_host}:{parts.port}" if parts.port else server_host
            cluster["server"] = urlunsplit(parts._replace(netloc=netloc))
    return yaml.safe_dump(config, sort_keys=False)


def namespace_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {**PSS_LABELS, "app.kubernetes.io/part-of": "zdtp"}},
    }


def database_manifests(*, name: str, address: str, port: int, namespace: str) -> list[dict[str, Any]]:
    """A Service without selector and its EndpointSlice: ``name:port`` inside the cluster."""
    labels = {"app.kubernetes.io/part-of": "zdtp", "app.kubernetes.io/component": "compose-database"}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"ports": [{"name": "postgres", "port": port, "targetPort": port, "protocol": "TCP"}]},
    }
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-compose",
            "namespace": namespace,
            "labels": {**labels, "kubernetes.io/service-name": name},
        },
        "addressType": "IPv6" if ":" in address else "IPv4",
        "ports": [{"name": "postgres", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
    }
    return [service, endpoints]


def parse_hosts(value: str) -> list[tuple[str, int]]:
    """``"source-db:5432 target-db:5432"`` → ``[("source-db", 5432), ("target-db", 5432)]``."""
    hosts = []
    for item in value.replace(",", " ").split():
        host, _, port = item.partition(":")
        hosts.append((host, int(port or 5432)))
    return hosts


def load_documents(paths: list[Path]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in paths:
        if not path.is_file():
            print(f"k3s-setup: {path} not found, skipped", flush=True)
            continue
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def _wait(what: str, check, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception as exc:  # the API may not answer yet
            last = exc
        else:
            last = None
        if time.monotonic() > deadline:
            raise SystemExit(f"k3s-setup: timed out waiting for {what}: {last or 'not ready'}")
        time.sleep(2)


def _resolve(host: str) -> str:
    return socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0]


def main() -> int:
    from kubernetes import client, config, dynamic

    source = Path(os.environ.get("K3S_KUBECONFIG", "/output/kubeconfig.yaml"))
    target = Path(os.environ.get("KUBECONFIG_OUT", "/opt/airflow/kube/config"))
    server_host = os.environ.get("K3S_SERVICE", "k3s")
    namespaces = os.environ.get("ZDTP_NAMESPACES", "zdtp").split()
    databases = parse_hosts(os.environ.get("ZDTP_DATABASE_HOSTS", ""))
    apply_files = [Path(p) for p in os.environ.get("ZDTP_APPLY", "").split()]

    _wait(f"{source}", source.is_file, timeout=180)
    rewritten = rewrite_kubeconfig(source.read_text(), server_host=server_host)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(rewritten)
    # Readable by the Airflow UID; it is the admin credential of a throw-away local cluster.
    partial.chmod(0o644)
    partial.replace(target)
    print(f"k3s-setup: wrote {target} (server https://{server_host}:6443)", flush=True)

    api = config.new_client_from_config(config_file=str(target))
    core = client.CoreV1Api(api)

    def node_ready() -> bool:
        nodes = core.list_node().items
        # any: k3s has one node; a cluster with extra NotReady nodes can still run workers.
        return any(
            any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or [])) for n in nodes
        )

    _wait("a Ready node", node_ready, timeout=300)
    dyn = dynamic.DynamicClient(api)

    def apply(doc: dict[str, Any]) -> None:
        resource = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        meta = doc["metadata"]
        namespace = meta.get("namespace") or (namespaces[0] if resource.namespaced else None)
        if resource.namespaced:
            meta["namespace"] = namespace
        dyn.server_side_apply(
            resource, body=doc, name=meta["name"], namespace=namespace,
            field_manager=FIELD_MANAGER, force_conflicts=True,
        )  # fmt: skip
        where = f"{namespace}/" if resource.namespaced else ""
        print(f"k3s-setup: applied {doc['kind']} {where}{meta['name']}", flush=True)

    for ns in namespaces:
        apply(namespace_manifest(ns))
    for doc in load_documents(apply_files):
        apply(doc)
    for host, port in databases:
        address = _resolve(host)
        for ns in namespaces:
            for doc in database_manifests(name=host, address=address, port=port, namespace=ns):
                apply(doc)
    print("k3s-setup: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
