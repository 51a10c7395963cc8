"""The user documentation agrees with the code.

- The config reference's generated section equals what devtools/docgen.py renders from the
  pydantic model now (regenerate with ``python -m devtools.docgen``).
- The operator reference names only classes and parameters that exist.
- Every relative link in README.md and docs/ resolves.
- Every shell command in a ``bash`` block of README.md or docs/*.md is in COMMANDS below, which
  says honestly how it is exercised, and the check that goes with that is run here.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]

# How each documented command is exercised. Kinds:
#   ci         run by `make test`, which is what CI (.ci/run) runs
#   demo       run by `make demo` (the Makefile must have the rule)
#   dry-run    the Makefile rule exists and `make -n` resolves it; not run by the suite
#   test       run by this module, as written (from the repository root)
#   install    docs/install.md: a command for the reader's own Airflow/cluster/registry; not run as
#              written (see the comment at those entries for the tests that cover what it does)
#   compose    a Docker command: NOT run anywhere here (no Docker engine on the test machines);
#              checked statically: services and profiles exist in docker-compose.yaml, and any
#              `airflow ...` command run inside a container parses with this repo's Airflow CLI
COMMANDS: dict[str, str] = {
    "make test": "ci",
    "make cluster-up": "ci",  # a prerequisite of `test`
    "make demo": "demo",
    "make cluster-down": "dry-run",
    "docker compose up -d": "compose",
    "docker compose ps": "compose",
    "docker compose exec airflow-scheduler airflow dags unpause zdtp_shop": "compose",
    "docker compose exec airflow-scheduler airflow dags trigger zdtp_shop": "compose",
    "docker compose exec k3s kubectl get pods -n zdtp-demo -l zdtp.io/task=shop": "compose",
    "docker compose exec target-db psql -U zdtp -d shop_copy"
    ' -c "SELECT count(*) FROM public.orders"': "compose",
    "docker compose --profile traffic up -d traffic": "compose",
    "docker compose exec airflow-scheduler airflow dags unpause zdtp_shop_stream": "compose",
    "docker compose exec airflow-scheduler airflow dags trigger zdtp_shop_stream": "compose",
    "docker compose --profile traffic down -v": "compose",
    "docker compose build worker-image": "compose",
    "docker compose exec airflow-scheduler airflow connections list": "compose",
    "docker compose exec airflow-scheduler zdtp render /opt/airflow/dags/syncs/shop.yaml": "compose",
    ".venv/bin/zdtp validate dags/syncs/shop.yaml dags/syncs/shop_stream.yaml": "test",
    # docs/install.md: commands for the reader's own Airflow and cluster, NOT run as written here.
    # What they do is exercised by: test_provider_listing (providers get/list of the installed
    # wheel), test_worker_image (wheel and image content), tests/integration/deploy (kustomize
    # render + server-side dry-run), tests/integration/connections (postgres connections, TLS).
    "uv build --wheel": "install",
    'pip install dist/zdtp-0.1.0-py3-none-any.whl "apache-airflow==3.3.2" --constraint'
    ' "https://raw.githubusercontent.com/apache/airflow/constraints-3.3.2/constraints-3.11.txt"': "install",
    "airflow providers get zdtp": "install",
    "airflow connections add shop_source --conn-type postgres --conn-host db.example.com --conn-port 5432"
    ' --conn-login zdtp --conn-password "$SOURCE_PASSWORD" --conn-schema shop --conn-extra'
    """ '{"sslmode": "verify-full", "sslrootcert": "/opt/airflow/certs/pg-ca.crt"}'""": "install",
    "kubectl create secret generic pg-tls --namespace data-sync --from-file=/opt/airflow/certs/pg-ca.crt": (
        "install"
    ),
    "kubectl apply --server-side -k zdtp-install/": "install",
    "docker build -t registry.example.com/zdtp/worker:0.1.0 .": "install",
    "docker push registry.example.com/zdtp/worker:0.1.0": "install",
}


def _commands(page: Path) -> list[str]:
    found = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", page.read_text(), re.S):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line and not line.startswith("#"):
                found.append(line)
    return found


def _all_commands() -> list[tuple[str, str]]:
    return [(p.relative_to(REPO).as_posix(), c) for p in PAGES for c in _commands(p)]


def test_every_documented_command_is_accounted_for():
    unknown = [f"{page}: {cmd}" for page, cmd in _all_commands() if cmd not in COMMANDS]
    assert not unknown, "commands in docs with no entry in COMMANDS:\n" + "\n".join(unknown)


def test_no_stale_entries_in_the_allow_list():
    documented = {cmd for _, cmd in _all_commands()}
    assert not set(COMMANDS) - documented, set(COMMANDS) - documented


def _make_rules() -> dict[str, list[str]]:
    rules = {}
    for line in (REPO / "Makefile").read_text().splitlines():
        match = re.match(r"^([A-Za-z][\w.-]*):(?!=)\s*(.*)$", line)
        if match:
            rules[match.group(1)] = match.group(2).split()
    return rules


@pytest.mark.parametrize("cmd", sorted(c for c, kind in COMMANDS.items() if c.startswith("make ")))
def test_make_commands_exist_and_are_run_where_claimed(cmd):
    target = cmd.split()[1]
    rules = _make_rules()
    kind = COMMANDS[cmd]
    if kind == "demo" and target not in rules:
        pytest.xfail("README documents `make demo` but the Makefile has no demo rule yet")
    assert target in rules, f"Makefile has no rule {target}"
    dry = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    if kind == "ci":
        ci = (REPO / ".ci/run").read_text()
        assert "make test" in ci
        assert target == "test" or target in rules["test"], f"`make test` does not run {target}"


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


@pytest.mark.parametrize("cmd", sorted(c for c, kind in COMMANDS.items() if kind == "compose"))
def test_compose_commands_name_existing_services_and_profiles(cmd):
    services = _compose()["services"]
    argv = shlex.split(cmd)
    assert argv[:2] == ["docker", "compose"]
    rest = argv[2:]
    while rest and rest[0] == "--profile":
        profile = rest[1]
        assert any(profile in s.get("profiles", []) for s in services.values()), profile
        rest = rest[2:]
    sub, args = rest[0], rest[1:]
    assert sub in {"up", "ps", "exec", "down", "build"}, sub
    names = [a for a in args if not a.startswith("-")]
    if sub == "exec":
        service, program = names[0], names[1]
        assert service in services, service
        image = services[service].get("image", "")
        expected = {
            "airflow": "airflow" in image,
            "kubectl": "k3s" in image,
            "psql": image.startswith("postgres:"),
            "zdtp": "airflow" in image,  # the provider's CLI, installed into the Airflow image
        }
        assert expected.get(program), f"{program} is not expected in {service} ({image})"
    else:
        for service in names:
            assert service in services, service


@pytest.mark.parametrize("cmd", sorted(c for c, kind in COMMANDS.items() if kind == "test"))
def test_local_commands_run_as_documented(cmd):
    argv = shlex.split(cmd)
    program = REPO / argv[0]
    if not program.exists():
        pytest.skip(f"{argv[0]} not installed (re-sync the venv: make venv)")
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zdtp_cli_is_installed_into_the_compose_airflow_image():
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts.get("zdtp") == "zdtp_provider.cli:main"
    dockerfile = (REPO / "deploy/compose/airflow.Dockerfile").read_text()
    assert '"apache-airflow==${AIRFLOW_VERSION}" /opt/zdtp/src' in dockerfile


def test_dag_ids_in_docs_exist():
    from zdtp_provider.config import load_config

    dag_ids = {load_config(p).dag_id for p in (REPO / "dags/syncs").glob("*.y*ml")}
    if not dag_ids:
        pytest.skip("no sync tasks in dags/syncs yet")
    mentioned = set()
    for page in PAGES:
        mentioned |= set(re.findall(r"\bzdtp_shop\w*", page.read_text()))
    assert mentioned, "the quickstart names no DAG"
    assert mentioned <= dag_ids, mentioned - dag_ids


@pytest.fixture(scope="module")
def airflow_cli():
    venv = REPO / ".venv/bin/airflow"
    if not venv.exists():
        pytest.skip("no .venv with Airflow")
    return str(venv)


def _airflow_argvs() -> list[list[str]]:
    """The documented `airflow ...` commands run inside containers, as argument lists."""
    found = []
    for cmd in sorted(COMMANDS):
        argv = shlex.split(cmd)
        if "airflow" in argv[1:]:
            found.append(argv[argv.index("airflow", 1) + 1 :])
    return found


_PARSE = """
import json, sys
from airflow.cli.cli_parser import get_parser
parser = get_parser()
for argv in json.loads(sys.argv[1]):
    args = parser.parse_args(argv)
    assert callable(args.func), argv
    print("parsed:", " ".join(argv))
"""


def test_airflow_commands_in_containers_parse_with_this_airflow(airflow_cli, tmp_path):
    """Each documented `airflow` command line parses with Airflow 3.3's CLI (not executed)."""
    argvs = _airflow_argvs()
    assert argvs
    env = {"AIRFLOW_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "AIRFLOW__CORE__LOAD_EXAMPLES": "false"}
    python = str(Path(airflow_cli).with_name("python"))
    result = subprocess.run(
        [python, "-c", _PARSE, json.dumps(argvs)], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("parsed:") == len(argvs)


# --- config reference ---------------------------------------------------------------------------


def test_config_reference_matches_the_model():
    from devtools import docgen

    page = docgen.REFERENCE.read_text()
    assert docgen.splice(page, docgen.render_config_reference()) == page, (
        "docs/config-reference.md is out of date: run .venv/bin/python -m devtools.docgen"
    )


def test_config_reference_lists_every_field():
    from zdtp_provider.config import SyncTaskConfig

    page = (DOCS / "config-reference.md").read_text()
    for name in SyncTaskConfig.model_fields:
        assert f"| `{name}` |" in page, name


def test_generated_full_example_is_a_valid_sync_task():
    from devtools import docgen
    from zdtp_provider.config import SyncTaskConfig, parse_config

    data = yaml.safe_load(docgen.example_yaml(SyncTaskConfig))
    parse_config(data, origin="docs example")


def test_hand_written_example_in_config_reference_is_valid():
    from zdtp_provider.config import parse_config

    page = (DOCS / "config-reference.md").read_text()
    example = re.search(r"```yaml\n(# dags/syncs/.*?)```", page, re.S).group(1)
    parse_config(yaml.safe_load(example), origin="docs/config-reference.md")


def test_docgen_check_mode_reports_staleness(tmp_path, monkeypatch):
    from devtools import docgen

    stale = tmp_path / "config-reference.md"
    stale.write_text(f"# x\n{docgen.BEGIN}\nold\n{docgen.END}\n")
    monkeypatch.setattr(docgen, "REFERENCE", stale)
    monkeypatch.setattr(docgen, "REPO", tmp_path)
    assert docgen.main(["--check"]) == 1
    assert docgen.main([]) == 0
    assert docgen.main(["--check"]) == 0


# --- operator reference ---------------------------------------------------------------------------

_PROVIDER_MODULES = [
    "zdtp_provider.operators.full",
    "zdtp_provider.operators.job",
    "zdtp_provider.operators.incremental",
    "zdtp_provider.sensors.incremental",
    "zdtp_provider.triggers.job",
    "zdtp_provider.triggers.deployment",
]


def _provider_classes() -> dict[str, type]:
    classes = {}
    for name in _PROVIDER_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        classes.update({k: v for k, v in vars(module).items() if inspect.isclass(v)})
    return classes


def _init_params(cls: type) -> set[str]:
    params = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            params |= set(inspect.signature(init).parameters)
    return params


def _operator_sections() -> list[tuple[list[str], list[str]]]:
    """(class names in a ### heading, parameter names in its table's first column)."""
    page = (DOCS / "operators.md").read_text()
    sections = []
    for chunk in re.split(r"^### ", page, flags=re.M)[1:]:
        heading, _, body = chunk.partition("\n")
        names = re.findall(r"`(\w+)`", heading)
        params = []
        for row in re.findall(r"^\| (`[^|]+`) \|", body, flags=re.M):
            params += re.findall(r"`(\w+)`", row)
        sections.append((names, params))
    return sections


def test_operator_reference_names_existing_classes_and_parameters():
    classes = _provider_classes()
    sections = _operator_sections()
    assert sections
    for names, params in sections:
        for name in names:
            assert name in classes, f"docs/operators.md documents {name}, which does not exist"
            missing = set(params) - _init_params(classes[name])
            assert not missing, f"{name}: documented parameters {missing} are not accepted"


def test_operator_reference_mentions_only_existing_classes():
    classes = _provider_classes()
    page = (DOCS / "operators.md").read_text()
    for name in set(re.findall(r"`(Zdtp\w+|\w+(?:Operator|Sensor|Trigger))`", page)):
        if name in {"KubernetesPodOperator", "KubernetesJobTrigger"}:  # cncf-kubernetes' own
            continue
        assert name in classes, f"docs/operators.md mentions {name}, which does not exist"


# --- links -----------------------------------------------------------------------------------------


def test_relative_links_resolve():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)}: broken link {target}"


def test_docs_index_lists_every_page():
    index = (DOCS / "README.md").read_text()
    for page in DOCS.glob("*.md"):
        if page.name != "README.md":
            assert f"({page.name})" in index, page.name


def test_compose_variables_documented_in_compose_page():
    header = (REPO / "docker-compose.yaml").read_text().split("\n---", 1)[0]
    variables = set(re.findall(r"^#   ([A-Z_][A-Z0-9_]+)\s", header, re.M))
    assert variables
    page = (DOCS / "compose.md").read_text()
    for var in variables:
        assert f"| `{var}` |" in page, var
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", (REPO / "docker-compose.yaml").read_text()))
    assert used <= variables, f"variables used but not listed in the header: {used - variables}"


def test_security_page_rbac_table_matches_deploy_rbac_yaml():
    rbac = REPO / "deploy/rbac.yaml"
    if not rbac.exists():
        pytest.skip("deploy/rbac.yaml not written yet")
    role = next(d for d in yaml.safe_load_all(rbac.read_text()) if d and d["kind"] == "Role")
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    documented = {}
    page = (DOCS / "security.md").read_text()
    table = page.split("| API group | resources | verbs | used for |", 1)[1].split("\n\n", 1)[0]
    for row in table.strip().splitlines()[1:]:
        group, resources, verbs = (c.strip() for c in row.strip("|").split("|")[:3])
        group = "" if group == "core" else group.strip("`")
        for resource in re.findall(r"`([\w/]+)`", resources):
            documented[(group, resource)] = {v.strip() for v in verbs.split(",")}
    assert documented == granted
