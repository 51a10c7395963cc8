"""Airflow discovers zdtp as a provider, with every hook, operator, sensor and trigger it ships.

Through Airflow's own CLI (``airflow providers list | get | triggers``, which read the
``apache_airflow_provider`` entry point of the installed distribution) in a throwaway Airflow
home, plus a completeness check: every operator/sensor/hook/trigger class defined anywhere in
``zdtp_provider`` lives in a module the provider info lists, so a new one cannot be forgotten.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import zdtp_provider
from zdtp_provider.get_provider_info import get_provider_info

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
KINDS = ("operators", "sensors", "hooks", "triggers")


def _airflow(home: Path, *args: str) -> list[dict]:
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    proc = subprocess.run(
        [AIRFLOW, "providers", *args, "-o", "json"], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    line = next((x for x in reversed(proc.stdout.splitlines()) if x.startswith("[")), None)
    assert line, proc.stdout[-2000:]
    return json.loads(line)


def _listed_modules(info: dict, kind: str) -> list[str]:
    return [m for entry in info.get(kind, []) for m in entry["python-modules"]]


def test_airflow_lists_the_provider_with_its_modules(tmp_path: Path) -> None:
    providers = {p["package_name"]: p for p in _airflow(tmp_path, "list")}
    assert "zdtp" in providers, sorted(providers)
    assert providers["zdtp"]["version"] == zdtp_provider.__version__

    (full,) = _airflow(tmp_path, "get", "zdtp", "--full")
    assert full["package-name"] == "zdtp"
    for kind in KINDS:
        assert _listed_modules(full, kind), f"airflow providers get zdtp shows no {kind}"
        assert _listed_modules(full, kind) == _listed_modules(get_provider_info(), kind)

    triggers = {t["class"] for t in _airflow(tmp_path, "triggers") if t["package_name"] == "zdtp"}
    assert triggers == set(_listed_modules(get_provider_info(), "triggers"))


def _base_classes() -> dict[str, type]:
    from airflow.sdk import BaseHook, BaseOperator, BaseSensorOperator
    from airflow.triggers.base import BaseTrigger

    return {
        "sensors": BaseSensorOperator,
        "operators": BaseOperator,
        "hooks": BaseHook,
        "triggers": BaseTrigger,
    }


def _kind_of(cls: type, bases: dict[str, type]) -> str | None:
    for kind, base in bases.items():  # sensors first: a sensor is also an operator
        if issubclass(cls, base) and cls is not base:
            return kind
    return None


def test_every_hook_operator_sensor_and_trigger_is_in_a_listed_module() -> None:
    bases = _base_classes()
    info = get_provider_info()
    listed = {kind: set(_listed_modules(info, kind)) for kind in KINDS}
    found: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for mod in pkgutil.walk_packages(zdtp_provider.__path__, "zdtp_provider."):
        if mod.name.rsplit(".", 1)[-1].startswith("_"):  # private helpers (bases, shared code)
            continue
        module = importlib.import_module(mod.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or cls.__name__.startswith("_"):
                continue
            kind = _kind_of(cls, bases)
            if kind:
                found[kind].add(module.__name__)
    for kind in KINDS:
        missing = found[kind] - listed[kind]
        assert not missing, f"{kind} defined in modules the provider info does not list: {sorted(missing)}"
        empty = listed[kind] - found[kind]
        assert not empty, f"provider info lists {kind} modules that define none: {sorted(empty)}"


@pytest.mark.parametrize("kind", KINDS)
def test_listed_modules_import(kind: str) -> None:
    for name in _listed_modules(get_provider_info(), kind):
        importlib.import_module(name)


def test_every_operator_extra_link_is_registered() -> None:
    """Airflow shows an operator's extra link only for classes the provider info lists."""
    from airflow.sdk import BaseOperatorLink

    found = set()
    for mod in pkgutil.walk_packages(zdtp_provider.__path__, "zdtp_provider."):
        module = importlib.import_module(mod.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                cls.__module__ == module.__name__
                and issubclass(cls, BaseOperatorLink)
                and cls is not BaseOperatorLink
            ):
                found.add(f"{cls.__module__}.{cls.__qualname__}")
    assert found <= set(get_provider_info().get("extra-links", [])), found
