"""Fixtures for provider integration tests: a DAG folder, a fake-password DB connection."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.provider._airflow import one_airflow


@pytest.fixture
def dag_folder(tmp_path: Path) -> Path:
    return tmp_path / "dags"


@pytest.fixture
def db_conns(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Airflow connections ``zt_src``/``zt_tgt`` whose password tests grep for everywhere."""
    password = f"zt-pw-{uuid.uuid4().hex[:12]}"
    for conn_id in ("zt_src", "zt_tgt"):
        uri = json.dumps(
            {
                "conn_type": "postgres",
                "host": "db.example",
                "port": 5432,
                "login": "sync",
                "password": password,
                "schema": conn_id,
            }
        )
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", uri)
    return {"password": password, "source": "zt_src", "target": "zt_tgt"}


def wait_for(check: Callable[[], object], *, timeout: float = 60, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def one_airflow_per_module() -> Iterator[None]:
    """Opt in with ``pytest.mark.usefixtures``: the module's ``run_dag`` calls go to one Airflow
    process (each run with its own env and a fresh import of its DAG file), so Airflow's start-up
    is paid once per module; ``start_dag`` (SIGTERM tests) still starts its own process."""
    with one_airflow():
        yield
