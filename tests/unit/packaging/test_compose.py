"""Invariants of docker-compose.yaml, checked without a container engine.

No Docker engine runs here, so ``docker compose up`` is never exercised by the test suite. What
these tests pin down instead: the file is valid for the compose tool when one is installed, every
service can be built or pulled, long-running services have health checks and start in order, the
Airflow services can reach k3s and the databases, the example sync tasks only name connections,
namespaces and tables the stack provides, and no secret is baked in beyond the documented
development defaults.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "docker-compose.yaml"
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}
ONE_SHOT_RESTART = {None, "no"}
# Development defaults that may appear in the file, all listed in its header and docs/compose.md.
DEV_DEFAULTS = {
    "AIRFLOW_DB_PASSWORD": "airflow",
    "ZDTP_SOURCE_PASSWORD": "zdtp-source",
    "ZDTP_TARGET_PASSWORD": "zdtp-target",
    "_AIRFLOW_WWW_USER_PASSWORD": "airflow",
}
_INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def _interpolate(value: str) -> str:
    """Compose-style ``${VAR:-default}`` with every variable unset (what a fresh clone sees)."""
    return _INTERP.sub(lambda m: m.group(2) or "", value).replace("$$", "$")


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(raw: dict) -> dict[str, dict]:
    return raw["services"]


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: _interpolate(str(v)) for k, v in env.items()}


def _depends(service: dict) -> dict[str, str]:
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def _one_shots(services: dict[str, dict]) -> set[str]:
    return {
        name
        for s in services.values()
        for name, cond in _depends(s).items()
        if cond == "service_completed_successfully"
    }


def test_every_service_has_an_image_or_a_build(services):
    for name, service in services.items():
        assert service.get("image") or service.get("build"), f"{name}: neither image nor build"
        if service.get("build"):
            build = service["build"]
            dockerfile = REPO / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"


def test_pulled_images_are_pinned_to_a_tag(services):
    for name, service in services.items():
        if service.get("build"):
            continue
        image = _interpolate(service["image"])
        assert ":" in image.rsplit("/", 1)[-1], f"{name}: image {image} has no tag"
        assert not image.endswith(":latest"), f"{name}: image {image} uses latest"


def test_long_running_services_have_health_checks_and_one_shots_are_awaited(services):
    one_shots = _one_shots(services)
    for name, service in services.items():
        if service.get("restart") in ONE_SHOT_RESTART:
            assert name in one_shots, f"{name}: a one-shot nobody waits for (service_completed_successfully)"
            assert "healthcheck" not in service
        else:
            assert service.get("healthcheck", {}).get("test"), f"{name}: long-running without healthcheck"
            assert name not in one_shots, f"{name}: restarts but others wait for it to complete"


def test_dependencies_wait_for_health_not_just_start(services):
    for name, service in services.items():
        for dep, cond in _depends(service).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert cond in {"service_healthy", "service_completed_successfully"}, (
                f"{name} → {dep}: {cond} does not wait for readiness"
            )
            if cond == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s health, it has none"


def test_start_order_is_acyclic_and_reaches_airflow_after_k3s_setup(services):
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str) -> None:
        if state.get(name) == "done":
            return
        assert state.get(name) != "visiting", f"dependency cycle through {name}"
        state[name] = "visiting"
        for dep in _depends(services[name]):
            visit(dep)
        state[name] = "done"
        order.append(name)

    for name in services:
        visit(name)
    for airflow in AIRFLOW_SERVICES:
        chain = set()
        todo = [airflow]
        while todo:
            current = todo.pop()
            for dep in _depends(services[current]):
                if dep not in chain:
                    chain.add(dep)
                    todo.append(dep)
        assert {"airflow-init", "k3s-setup", "k3s", "worker-image-export", "worker-image"} <= chain, airflow


def test_airflow_services_all_present_with_kubernetes_connection(services):
    assert services.keys() >= AIRFLOW_SERVICES | {"airflow-init", "postgres"}
    for name in AIRFLOW_SERVICES | {"airflow-init"}:
        env = _env(services[name])
        conn = json.loads(env["AIRFLOW_CONN_KUBERNETES_DEFAULT"])
        assert conn["conn_type"] == "kubernetes", name
        assert conn["extra"]["kube_config_path"] == "/opt/airflow/kube/config", name
        mounts = services[name]["volumes"]
        assert "kube:/opt/airflow/kube:ro" in mounts, f"{name}: kubeconfig volume not mounted read-only"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"


def test_k3s_serves_its_service_name_and_kubeconfig_is_rewritten_to_it(services):
    k3s = services["k3s"]
    assert k3s.get("privileged") is True
    assert "--tls-san=k3s" in k3s["command"], "the serving certificate must carry the name 'k3s'"
    assert _env(k3s)["K3S_KUBECONFIG_OUTPUT"] == "/output/kubeconfig.yaml"
    setup = services["k3s-setup"]
    env = _env(setup)
    assert env["K3S_KUBECONFIG"] == "/output/kubeconfig.yaml"
    assert env["KUBECONFIG_OUT"] == "/opt/airflow/kube/config"
    assert env["K3S_SERVICE"] == "k3s"
    assert "k3s-output:/output:ro" in setup["volumes"] and "k3s-output:/output" in k3s["volumes"]
    assert "kube:/opt/airflow/kube" in setup["volumes"]
    assert setup["entrypoint"][-1] == "/opt/zdtp/compose/k3s_setup.py"
    assert (REPO / "deploy/compose/k3s_setup.py").is_file()


def test_worker_image_is_built_smoke_tested_and_imported_into_k3s(services):
    image = services["worker-image"]
    assert image["build"]["dockerfile"] == "Dockerfile"
    assert _interpolate(image["image"]) == "zdtp/worker:0.1.0"
    # Smoke run the way Kubernetes runs it (zdtp_provider.k8s.security).
    assert image["user"] == "10001:10001" and image["read_only"] is True
    assert image["cap_drop"] == ["ALL"] and image["network_mode"] == "none"
    export = services["worker-image-export"]
    assert "k3s-images:/images" in export["volumes"]
    assert "k3s-images:/var/lib/rancher/k3s/agent/images" in services["k3s"]["volumes"]
    assert _env(export)["ZDTP_WORKER_IMAGE"] == _interpolate(image["image"])
    script = "\n".join(export["command"])
    assert "docker image save" in script and "/images/zdtp-worker.tar" in script
    assert _depends(services["k3s"])["worker-image-export"] == "service_completed_successfully"


def test_worker_image_tag_matches_the_sync_task_default():
    from zdtp_provider.config import SyncTaskConfig

    assert SyncTaskConfig.model_fields["image"].default == "zdtp/worker:0.1.0"


def test_source_has_logical_wal_and_sample_data(services):
    for name in ("source-db", "target-db"):
        command = services[name]["command"]
        assert "wal_level=logical" in command, name
    init = services["source-db"]["volumes"]
    assert "./deploy/compose/source-init:/docker-entrypoint-initdb.d:ro" in init
    assert (REPO / "deploy/compose/source-init/01-shop.sql").is_file()


def _example_syncs():
    from zdtp_provider.config import load_config

    return [load_config(p) for p in sorted((REPO / "dags/syncs").glob("*.y*ml"))]


def test_example_syncs_name_only_connections_the_stack_defines(services):
    syncs = _example_syncs()
    if not syncs:
        pytest.skip("no example sync tasks in dags/syncs yet")
    env = _env(services["airflow-scheduler"])
    target_dbs = _env(services["target-db"])["ZDTP_TARGET_DATABASES"].split()
    for cfg in syncs:
        for conn_id in (cfg.source_conn_id, cfg.target_conn_id):
            var = f"AIRFLOW_CONN_{conn_id.upper()}"
            assert var in env, f"{cfg.name}: compose defines no {var}"
        kube = f"AIRFLOW_CONN_{cfg.kubernetes_conn_id.upper()}"
        assert kube in env, f"{cfg.name}: compose defines no {kube}"
        source = env[f"AIRFLOW_CONN_{cfg.source_conn_id.upper()}"]
        target = env[f"AIRFLOW_CONN_{cfg.target_conn_id.upper()}"]
        assert "@source-db:5432/" in source, cfg.name
        assert "@target-db:5432/" in target and target.rsplit("/", 1)[1] in target_dbs, cfg.name


def test_example_syncs_run_in_namespaces_k3s_setup_creates(services):
    syncs = _example_syncs()
    namespaces = _env(services["k3s-setup"])["ZDTP_NAMESPACES"].split()
    assert "zdtp" in namespaces  # SyncTaskConfig's default namespace
    for cfg in syncs:
        assert cfg.namespace in namespaces, f"{cfg.name}: namespace {cfg.namespace} is not created"


def test_example_syncs_name_tables_of_the_sample_data():
    syncs = _example_syncs()
    sql = (REPO / "deploy/compose/source-init/01-shop.sql").read_text()
    created = set(re.findall(r"CREATE TABLE (\w+\.\w+)", sql))
    for cfg in syncs:
        missing = set(cfg.tables) - created
        assert not missing, f"{cfg.name}: sample data has no {missing}"
        assert cfg.select_tables(sorted(created)), f"{cfg.name}: selects nothing from the sample data"


def test_no_secrets_beyond_documented_dev_defaults(raw, services):
    text = COMPOSE.read_text()
    # Every ${VAR:-default} whose name smells secret must be a listed dev default.
    for var, default in _INTERP.findall(text):
        if re.search(r"PASSWORD|SECRET|TOKEN|KEY", var):
            assert DEV_DEFAULTS.get(var) == default, f"${{{var}}}: default {default!r} is not a dev default"
    for name, service in services.items():
        for key, value in service.get("environment", {}).items():
            value = str(value)
            if re.search(r"PASSWORD|SECRET|TOKEN|FERNET|JWT", key):
                assert "${" in value, f"{name}: {key} is a literal; take it from the environment"
            # Passwords inside connection URIs must also be interpolated.
            for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", value):
                assert password.startswith("${"), f"{name}: {key} has a literal password"
    documented = (REPO / "docs/compose.md").read_text() if (REPO / "docs/compose.md").exists() else ""
    header = text.split("---", 1)[0]
    for var in DEV_DEFAULTS:
        assert var in header, f"{var} not documented in the compose file header"
        if documented:
            assert var in documented, f"{var} not documented in docs/compose.md"


def test_dockerfiles_bake_no_secrets():
    for path in (REPO / "Dockerfile", REPO / "deploy/compose/airflow.Dockerfile"):
        for line in path.read_text().splitlines():
            if line.strip().startswith(("ENV", "ARG")):
                assert not re.search(r"PASSWORD|SECRET|TOKEN|DSN|_CONN_", line, re.I), f"{path.name}: {line}"


def _compose_tool() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.mark.parametrize("profiles", [[], ["--profile", "traffic"]], ids=["default", "traffic"])
def test_compose_tool_accepts_the_file(profiles, tmp_path):
    tool = _compose_tool()
    if tool is None:
        # `make test` installs Debian's docker-compose (dev/system-packages.sh): missing is a failure.
        pytest.fail("no compose tool: neither `docker compose` nor `docker-compose` (apt: docker-compose)")
    result = subprocess.run(
        [*tool, "-f", str(COMPOSE), "--project-directory", str(REPO), *profiles, "config"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    # docker-compose v1 lists profile-only services in `config` either way; v2 only when enabled.
    if "traffic" in rendered["services"]:
        assert rendered["services"]["traffic"]["profiles"] == ["traffic"]
    scheduler = rendered["services"]["airflow-scheduler"]
    assert "k3s-setup" in scheduler["depends_on"]
