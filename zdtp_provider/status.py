"""One sync task's status: mode, Deployment state and restarts, lag (seconds from the worker's
metrics, bytes from the slot), retained WAL, last full run, last verify.

Assembled from three places, each optional (a part without its handle is ``None``, never
guessed): the Kubernetes API (:func:`zdtp_provider.triggers.health.stream_health`), the source's
slot and the target's ``zdtp`` state (:mod:`zdtp_worker.control.status`). ``zdtp status`` prints
it one line per task; ``IncrementalSyncSensor`` returns the WAL part (:func:`wal_check`) in its
report, so the Airflow UI shows it as the sensor's XCom.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from zdtp_worker.control import status as db
from zdtp_worker.control.names import task_stream_name


def _conn_dsn(conn_id: str) -> str:
    from airflow.sdk import BaseHook

    from zdtp_provider.connections import dsn_from_connection

    return dsn_from_connection(BaseHook.get_connection(conn_id))


def wal_check(
    *,
    task: str | None,
    slot: str | None,
    source_conn_id: str | None = None,
    target_conn_id: str | None = None,
    source_dsn: str | None = None,
    target_dsn: str | None = None,
    limits: tuple[int | None, int | None, float | None] = (None, None, None),
) -> dict[str, Any]:
    """The slot's status plus the guard's verdict (``ok``/``warn``/``fail``) and messages."""
    if not slot and not task:
        raise ValueError("wal_check: give the sync task or the slot")
    slot = slot or task_stream_name(task)  # type: ignore[arg-type]
    source_dsn = source_dsn or _conn_dsn(source_conn_id)  # type: ignore[arg-type]
    if target_conn_id and not target_dsn:
        target_dsn = _conn_dsn(target_conn_id)
    state = db.slot_status(source_dsn, slot)
    stopped_since = None
    applied = None
    if target_dsn:
        applied = db.target_status(target_dsn, stream=slot, tables=[])["applied"]
        if applied:
            stopped_since = dt.datetime.fromisoformat(applied["updated_at"])
    verdict, messages = db.wal_verdict(state, db.WalLimits(*limits), stopped_since=stopped_since)
    return {**state, "applied": applied, "verdict": verdict, "messages": messages}


def task_status(
    config: Any,
    *,
    hook: Any | None,
    source_dsn: str | None,
    target_dsn: str | None,
    tables: list[str] | None = None,
    health_port: int = 8080,
) -> dict[str, Any]:
    """The status of one sync task (``config``: its SyncTaskConfig)."""
    from zdtp_provider.triggers.health import stream_health
    from zdtp_provider.workload import deployment_name

    out: dict[str, Any] = {"task": config.name, "mode": config.mode, "namespace": config.namespace}
    streams = config.mode != "full"
    if hook is not None and streams:
        health = stream_health(
            hook,
            name=deployment_name(config.name),
            namespace=config.namespace,
            max_restarts=3,
            max_lag_seconds=float("inf"),  # read the lag metric (never "lagging" by itself)
            health_port=health_port,
        )
        dep_found = "Deployment not found" not in health["reasons"]
        out["deployment"] = (
            "missing"
            if not dep_found
            else ("available" if health.get("available_replicas") else "unavailable")
        )
        out["restarts"] = sum((health.get("restarts") or {}).values()) if dep_found else None
        out["lag_seconds"] = health.get("lag_seconds")
        out["problems"] = [r for r in health["reasons"] if not r.startswith("lag ")]
    slot = task_stream_name(config.name)
    if source_dsn and streams:
        wal = wal_check(task=config.name, slot=slot, source_dsn=source_dsn, target_dsn=target_dsn)
        out["slot"] = "missing" if not wal["exists"] else ("active" if wal["active"] else "inactive")
        out["retained_wal_bytes"] = wal.get("retained_wal_bytes")
        out["lag_bytes"] = wal.get("unconfirmed_bytes")
        out["wal_verdict"] = wal["verdict"]
    if target_dsn:
        state = db.target_status(target_dsn, stream=slot, tables=list(tables or config.tables))
        out["applied"] = state["applied"]
        out["last_full_run"] = state["last_full_run"]
    return out
