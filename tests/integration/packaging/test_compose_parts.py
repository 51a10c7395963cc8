"""The docker-compose stack's parts, run outside Docker (no engine on the test machines).

- The source's init SQL loads into a real PostgreSQL, the example sync tasks plan against it, and
  the planned WorkerSpecs copy it with the real worker: the compose demo's data path minus the
  containers.
- The target's init script creates the per-task databases.
- ``k3s_setup.py`` runs against the dev cluster's real kube-apiserver: namespaces with Pod
  Security labels, database Services and EndpointSlices accepted by validation, idempotent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
COMPOSE_DIR = REPO / "deploy/compose"


def _psql() -> str:
    from devtools.postgres import pg_bin_dir

    return str(pg_bin_dir() / "psql")


def _load_sample(dsn: str) -> None:
    result = subprocess.run(
        [
            _psql(),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            dsn,
            "-f",
            str(COMPOSE_DIR / "source-init/01-shop.sql"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr


def _example_configs() -> dict:
    from zdtp_provider.config import load_config

    return {cfg.name: cfg for cfg in map(load_config, sorted((REPO / "dags/syncs").glob("*.y*ml")))}


def _counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM public.{t}").fetchone()[0]
            for t in ("customers", "products", "orders")
        }


@pytest.mark.postgres
def test_sample_data_loads_and_every_example_sync_plans_against_it(source_dsn):
    from zdtp_provider.planner import plan_workers, read_catalog

    _load_sample(source_dsn)
    assert _counts(source_dsn) == {"customers": 50_000, "products": 2_000, "orders": 300_000}
    configs = _example_configs()
    if not configs:
        pytest.skip("no example sync tasks in dags/syncs")
    for cfg in configs.values():
        estimates = read_catalog(source_dsn, cfg)
        assert estimates, cfg.name
        if cfg.mode != "incremental":
            assert plan_workers(cfg, estimates, run_id="plan-check"), cfg.name


@pytest.mark.postgres
def test_the_example_full_sync_copies_all_sample_rows(source_dsn, target_dsn):
    """The compose demo's data path minus the containers: plan `shop`, run each WorkerSpec."""
    from zdtp_provider.planner import plan_workers, read_catalog

    _load_sample(source_dsn)
    cfg = _example_configs().get("shop")
    if cfg is None:
        pytest.skip("dags/syncs/shop.yaml not present")
    specs = plan_workers(cfg, read_catalog(source_dsn, cfg), run_id=f"compose-{uuid.uuid4().hex[:6]}")
    assert len(specs) > 1
    env = {**os.environ, "ZDTP_SOURCE_DSN": source_dsn, "ZDTP_TARGET_DSN": target_dsn}
    # One after the other, so the outcome does not depend on timing (pods would run in parallel).
    for spec in specs:
        result = subprocess.run(
            [sys.executable, "-m", "zdtp_worker", "full"],
            env={**env, "ZDTP_WORKER_SPEC": spec.to_json()},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout.strip().splitlines()[-1])["status"] == "ok"
    assert _counts(target_dsn) == _counts(source_dsn)


@pytest.mark.postgres
def test_target_init_script_creates_one_database_per_example_task(pg_server):
    names = [f"compose_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    parts = urlsplit(pg_server.base_dsn)
    env = {
        "PATH": f"{Path(_psql()).parent}:/usr/bin:/bin",
        "PGHOST": pg_server.host,
        "PGPORT": str(pg_server.port),
        "PGPASSWORD": pg_server.password,
        "POSTGRES_USER": parts.username or "postgres",
        "POSTGRES_DB": "postgres",
        "ZDTP_TARGET_DATABASES": " ".join(names),
    }
    try:
        result = subprocess.run(
            ["bash", str(COMPOSE_DIR / "target-init/01-databases.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        with psycopg.connect(pg_server.dsn()) as conn:
            found = {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
        assert set(names) <= found
    finally:
        for name in names:
            pg_server.drop_database(name)


@pytest.fixture
def k3s_setup():
    spec = importlib.util.spec_from_file_location("k3s_setup", COMPOSE_DIR / "k3s_setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.cluster
def test_k3s_setup_applies_its_objects_to_a_real_api_server(cluster, k3s_setup, tmp_path, monkeypatch):
    """Runs main() as the k3s-setup service would, against the dev cluster instead of k3s.

    The dev cluster's server is already 127.0.0.1, so the rewrite keeps it (the rewrite itself is
    unit tested). The database names resolve to documentation-range IPs here (the API server
    rejects loopback endpoints): only API objects are created, no traffic is sent.
    """
    namespaces = [f"t-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    out = tmp_path / "kube" / "config"
    monkeypatch.setenv("K3S_KUBECONFIG", str(cluster.kubeconfig))
    monkeypatch.setenv("KUBECONFIG_OUT", str(out))
    monkeypatch.setenv("K3S_SERVICE", "127.0.0.1")
    monkeypatch.setenv("ZDTP_NAMESPACES", " ".join(namespaces))
    monkeypatch.setenv("ZDTP_DATABASE_HOSTS", "source-db:5432 target-db:5433")
    addresses = {"source-db": "192.0.2.10", "target-db": "192.0.2.11"}
    monkeypatch.setattr(k3s_setup, "_resolve", addresses.__getitem__)
    monkeypatch.setenv("ZDTP_APPLY", str(tmp_path / "absent.yaml"))
    try:
        assert k3s_setup.main() == 0
        assert k3s_setup.main() == 0  # idempotent: a second `docker compose up` re-runs it
        assert oct(out.stat().st_mode & 0o777) == "0o644"
        assert yaml.safe_load(out.read_text())["clusters"]
        from kubernetes import client

        discovery = client.DiscoveryV1Api(cluster.api)
        for ns in namespaces:
            labels = cluster.core.read_namespace(ns).metadata.labels
            assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
            service = cluster.core.read_namespaced_service("source-db", ns)
            assert service.spec.ports[0].port == 5432 and service.spec.cluster_ip
            slices = discovery.list_namespaced_endpoint_slice(
                ns, label_selector="kubernetes.io/service-name=target-db"
            ).items
            assert [s.endpoints[0].addresses for s in slices] == [["192.0.2.11"]]
            assert slices[0].ports[0].port == 5433
    finally:
        for ns in namespaces:
            cluster.core.delete_namespace(ns, propagation_policy="Background")
