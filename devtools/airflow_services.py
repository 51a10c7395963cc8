"""A real, multi-process Airflow 3 for tests: scheduler, api-server, dag-processor, triggerer.

Not ``airflow standalone``: SIGTERM to its parent orphans the children (they keep the port and the
DB). Here every service is its own process group (``start_new_session``), so :meth:`stop` can
SIGTERM the whole group — LocalExecutor workers and task processes included — then SIGKILL what
is left after a grace period.

Layout of ``home``: ``airflow.db`` (or an external metadata DB), ``logs/<service>.log`` (stdout +
stderr of each service), ``passwords.json`` (SimpleAuthManager: one admin user with a known,
random password). The api-server binds 127.0.0.1 on a free port; the services share a JWT secret
so task processes can talk to the execution API.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devtools.airflow_home import airflow_env, migrate
from devtools.ports import free_port

SERVICES = ("scheduler", "dag-processor", "triggerer", "api-server")
USERNAME = "zdtp"


class AirflowServiceError(RuntimeError):
    pass


def services_env(
    home: Path,
    *,
    port: int,
    dags_folder: Path,
    kubeconfig: Path | None = None,
    sql_alchemy_conn: str | None = None,
    parallelism: int = 4,
) -> dict[str, str]:
    """Environment for every service (and CLI call) of one test Airflow."""
    env = airflow_env(home, kubeconfig=kubeconfig)
    base_url = f"http://127.0.0.1:{port}"
    env.update(
        {
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__EXPOSE_CONFIG": "False",
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            # New DAG files are listed quickly; each file is re-parsed at most every 30 s.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        }
    )
    if sql_alchemy_conn:
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = sql_alchemy_conn
    return env


@dataclass
class AirflowServices:
    """Running services plus an authenticated REST client for their api-server."""

    home: Path
    env: dict[str, str]
    port: int
    password: str
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    _token: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def username(self) -> str:
        return USERNAME

    def log_path(self, service: str) -> Path:
        return self.home / "logs" / f"{service}.log"

    # ---------------------------------------------------------------- lifecycle

    def start(self, services: Iterable[str] = SERVICES) -> None:
        airflow = str(Path(sys.executable).with_name("airflow"))
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        for name in services:
            args = [airflow, name]
            if name == "api-server":
                args += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
            elif name in ("scheduler", "triggerer"):
                # serve-logs binds 0.0.0.0:8793/8794 (not configurable): not needed when the
                # api-server reads the same local log folder, and it would clash between homes.
                args.append("--skip-serve-logs")
            with open(self.log_path(name), "ab") as out:
                self.procs[name] = subprocess.Popen(
                    args,
                    env={**os.environ, **self.env},
                    cwd=self.home,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: stop() reaches every child
                )

    def stop(self, *, grace: float = 20.0) -> None:
        """SIGTERM every service's process group, then SIGKILL groups still alive after ``grace``."""
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in self.procs.values():
            # The leader may be gone while its children (executor workers, tasks) linger.
            _signal_group(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self.procs.clear()

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AirflowServiceError(
                    f"airflow {name} exited with {proc.returncode}: {self.log_tail(name)}"
                )

    def log_tail(self, service: str, lines: int = 15) -> str:
        try:
            text = self.log_path(service).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.strip().splitlines()[-lines:])

    def wait_healthy(self, *, timeout: float = 120.0) -> dict:
        """Wait until the api-server answers and reports every component healthy."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                resp = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5)
                last = resp.text
                if resp.status_code == 200:
                    health = resp.json()
                    wanted = [k for k in ("metadatabase", "scheduler", "triggerer", "dag_processor")]
                    if all((health.get(k) or {}).get("status") == "healthy" for k in wanted):
                        return health
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(1)
        raise AirflowServiceError(f"Airflow not healthy after {timeout:.0f}s: {last}")

    # ---------------------------------------------------------------- REST

    def token(self) -> str:
        if self._token is None:
            resp = httpx.post(
                f"{self.base_url}/auth/token",
                json={"username": self.username, "password": self.password},
                timeout=10,
            )
            if resp.status_code not in (200, 201):
                raise AirflowServiceError(f"POST /auth/token: {resp.status_code} {resp.text}")
            self._token = resp.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.base_url}/api/v2{path}", headers=headers, timeout=30, **kwargs)

    def api_json(self, method: str, path: str, **kwargs) -> dict:
        resp = self.api(method, path, **kwargs)
        if resp.status_code >= 300:
            raise AirflowServiceError(f"{method} {path}: {resp.status_code} {resp.text[:500]}")
        return resp.json()

    def wait_for_dag(self, dag_id: str, *, timeout: float = 90.0) -> dict:
        """The DAG's API record once the dag-processor has serialized it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            resp = self.api("GET", f"/dags/{dag_id}")
            if resp.status_code == 200:
                return resp.json()
            time.sleep(1)
        errors = self.api_json("GET", "/importErrors")
        raise AirflowServiceError(f"DAG {dag_id} not parsed after {timeout:.0f}s; import errors: {errors}")

    def unpause(self, dag_id: str) -> None:
        self.api_json("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, *, conf: dict | None = None) -> dict:
        body = {"logical_date": None, "conf": conf or {}}
        return self.api_json("POST", f"/dags/{dag_id}/dagRuns", json=body)

    def wait_run(self, dag_id: str, run_id: str, *, timeout: float = 120.0) -> dict:
        """The run once it is ``success`` or ``failed`` (AirflowServiceError on timeout)."""
        deadline = time.monotonic() + timeout
        run: dict = {}
        while time.monotonic() < deadline:
            self.check_alive()
            run = self.api_json("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(1)
        states = self.task_states(dag_id, run_id)
        raise AirflowServiceError(f"run {run_id} still {run.get('state')} after {timeout:.0f}s: {states}")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        data = self.api_json("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        out: dict[str, str | None] = {}
        for ti in data["task_instances"]:
            key = ti["task_id"] if ti.get("map_index", -1) < 0 else f"{ti['task_id']}[{ti['map_index']}]"
            out[key] = ti["state"]
        return out


def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def start_airflow(
    home: Path,
    *,
    dags_folder: Path,
    kubeconfig: Path | None = None,
    sql_alchemy_conn: str | None = None,
    extra_env: dict[str, str] | None = None,
    timeout: float = 150.0,
) -> AirflowServices:
    """Migrate a fresh metadata DB in ``home`` and start all four services (healthy on return)."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = services_env(
        home, port=port, dags_folder=dags_folder, kubeconfig=kubeconfig, sql_alchemy_conn=sql_alchemy_conn
    )
    env.update(extra_env or {})
    password = secrets.token_urlsafe(12)
    (home / "passwords.json").write_text(json.dumps({USERNAME: password}))
    migrate(env)
    services = AirflowServices(home=home, env=env, port=port, password=password)
    try:
        services.start()
        services.wait_healthy(timeout=timeout)
    except BaseException:
        services.stop()
        raise
    return services
