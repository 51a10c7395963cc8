"""A throwaway Airflow home wired to the dev cluster: SQLite metadata DB, zdtp's ``dags/``,
and the ``kubernetes_default`` connection pointing at the dev kubeconfig.

Airflow reads its configuration at import time, so :func:`airflow_env` is applied to
``os.environ`` before anything imports ``airflow`` (pytest does it in ``pytest_configure``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def airflow_env(home: Path, *, kubeconfig: Path | None = None) -> dict[str, str]:
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    }
    if kubeconfig is not None:
        env["AIRFLOW_CONN_KUBERNETES_DEFAULT"] = kubernetes_conn_uri(kubeconfig)
    return env


def kubernetes_conn_uri(kubeconfig: Path) -> str:
    return json.dumps({"conn_type": "kubernetes", "extra": {"kube_config_path": str(kubeconfig)}})


def migrate(env: dict[str, str]) -> None:
    airflow = Path(sys.executable).with_name("airflow")
    proc = subprocess.run(
        [str(airflow), "db", "migrate"], env={**os.environ, **env}, capture_output=True, text=True
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError("airflow db migrate failed: " + " | ".join(tail))
