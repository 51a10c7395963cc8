"""Every third-party module the product imports is declared in pyproject.toml, with bounds.

The imports are read from the source (AST, including imports inside functions), mapped to the
distributions that provide them in this environment, and compared with ``[project]
dependencies`` (provider) and the ``worker`` extra (worker: it must never need Airflow).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
OWN = {"zdtp_provider", "zdtp_worker"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.lower())


def _requirement_names(requirements: list[str]) -> dict[str, str]:
    """normalised distribution name → the requirement string."""
    out = {}
    for req in requirements:
        name = re.match(r"^[A-Za-z0-9_.-]+", req).group(0)
        out[_norm(name)] = req
    return out


def _imported_top_levels(package: str) -> set[str]:
    found = set()
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - OWN


def _providing(module: str) -> set[str]:
    if module == "airflow":  # namespace shared by core, task-sdk and providers: the meta package
        return {"apache-airflow"}
    dists = packages_distributions().get(module)
    assert dists, f"no installed distribution provides {module!r}"
    return {_norm(d) for d in dists}


def _check(package: str, requirements: list[str]) -> None:
    declared = _requirement_names(requirements)
    for module in sorted(_imported_top_levels(package)):
        dists = _providing(module)
        hit = dists & set(declared)
        assert hit, f"{package} imports {module!r} (from {sorted(dists)}) but pyproject does not declare it"
        for dist in hit:
            req = declared[dist]
            assert ">=" in req and "<" in req.replace("<=", ""), f"{req!r}: give a floor and a cap"


def test_provider_imports_are_declared_with_bounds() -> None:
    _check("zdtp_provider", PROJECT["dependencies"])


def test_worker_imports_are_in_the_worker_extra_without_airflow() -> None:
    assert "airflow" not in _imported_top_levels("zdtp_worker")
    _check("zdtp_worker", PROJECT["optional-dependencies"]["worker"])


def test_provider_uses_kubernetes_provider_modules_it_declares() -> None:
    declared = _requirement_names(PROJECT["dependencies"])
    uses_cncf = any(
        "airflow.providers.cncf.kubernetes" in path.read_text()
        for path in (REPO / "zdtp_provider").rglob("*.py")
    )
    assert not uses_cncf or "apache-airflow-providers-cncf-kubernetes" in declared
