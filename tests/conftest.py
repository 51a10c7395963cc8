"""Shared pytest fixtures: real PostgreSQL, the real dev Kubernetes cluster, an Airflow home.

Session-scoped servers are reused when already running (warm runs stay fast); every test gets
fresh databases / a fresh namespace so tests never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STATE_DIR = REPO / ".zdtp"

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.cluster", "tests.fixtures.airflow_home"]


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def tmp_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    yield monkeypatch


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"zdtp state dir: {STATE_DIR}", f"ZDTP_KUBECONFIG={os.environ.get('ZDTP_KUBECONFIG', '')}"]
