"""One sync task's status: mode, Deployment state and restarts, lag (seconds from the worker's
metrics, bytes from the slot), retained WAL, last full run, last verify.

Assembled from three places, each optional (a part without its handle is ``None``, never
guessed): the Kubernetes API (:func:`zdtp_provider.triggers.health.stream_health`), the source's
slot and the target's ``zdtp`` state (:mod:`zdtp_worker.control.status`: ``cdc_state``,
``full_plans``/``full_chunks``, ``verify_log``). ``zdtp status`` prints it one line per task;
``IncrementalSyncSensor`` returns the same :func:`summary` (and its line) in its report, so the
Airflow UI shows it as the sensor's XCom.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from zdtp_worker.control import status as db
from zdtp_worker.control.names import task_stream_name


def connection_dsn(conn_id: str) -> str:
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
    source_dsn = source_dsn or connection_dsn(source_conn_id)  # type: ignore[arg-type]
    if target_conn_id and not target_dsn:
        target_dsn = connection_dsn(target_conn_id)
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
) -> dict[str, Any]:
    """The status of one sync task (``config``: its SyncTaskConfig); ``tables``: its target
    tables when the config selects by ``include`` (else the listed ones are used)."""
    return summary(
        task=config.name,
        mode=config.mode,
        namespace=config.namespace,
        dag_id=config.dag_id,
        hook=hook,
        source_dsn=source_dsn,
        target_dsn=target_dsn,
        tables=list(tables or config.tables),
    )


def summary(
    *,
    task: str,
    mode: str,
    namespace: str,
    hook: Any | None,
    source_dsn: str | None,
    target_dsn: str | None,
    tables: list[str] | None = None,
    dag_id: str | None = None,
    health: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One task's status (``zdtp status -o json``'s object, the sensor's ``status``); ``health``:
    a :func:`stream_health` report already read (the sensor's), else it is read through ``hook``."""
    out: dict[str, Any] = {"task": task, "mode": mode, "namespace": namespace, "errors": []}
    args = {
        "hook": hook,
        "source_dsn": source_dsn,
        "target_dsn": target_dsn,
        "tables": tables,
        "health": health,
    }
    for part in (_kube_part, _source_part, _target_part):
        try:
            part(out, **args)
        except Exception as exc:  # one unreachable side must not hide the others
            out["errors"].append(
                f"{part.__name__.strip('_')}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            )
    if out.get("last_verify") is None and mode != "incremental" and dag_id:
        # No zdtp.verify_log (an older target, or verify level none): Airflow's record, if reachable.
        out["last_verify"] = last_verify(dag_id)
    out.setdefault("last_verify", None)
    return out


def _kube_part(
    out: dict[str, Any], *, hook: Any, health: dict[str, Any] | None, health_port: int = 8080, **_: Any
) -> None:
    from zdtp_provider.triggers.health import stream_health
    from zdtp_provider.workload import deployment_name

    if out["mode"] == "full" or (hook is None and health is None):
        return
    if health is None:
        health = stream_health(
            hook,
            name=deployment_name(out["task"]),
            namespace=out["namespace"],
            max_restarts=3,
            max_lag_seconds=float("inf"),  # read the lag metric (never "lagging" by itself)
            health_port=health_port,
        )
    dep_found = "Deployment not found" not in health["reasons"]
    out["deployment"] = (
        "missing" if not dep_found else ("available" if health.get("available_replicas") else "unavailable")
    )
    out["restarts"] = sum((health.get("restarts") or {}).values()) if dep_found else None
    out["lag_seconds"] = health.get("lag_seconds")
    out["problems"] = [r for r in health["reasons"] if not r.startswith("lag ")]


def _source_part(out: dict[str, Any], *, source_dsn: str | None, target_dsn: str | None, **_: Any) -> None:
    if source_dsn and out["mode"] != "full":
        slot = task_stream_name(out["task"])
        wal = wal_check(task=out["task"], slot=slot, source_dsn=source_dsn, target_dsn=target_dsn)
        out["slot"] = "missing" if not wal["exists"] else ("active" if wal["active"] else "inactive")
        out["retained_wal_bytes"] = wal.get("retained_wal_bytes")
        out["lag_bytes"] = wal.get("unconfirmed_bytes")
        out["wal_verdict"] = wal["verdict"]


def _target_part(out: dict[str, Any], *, target_dsn: str | None, tables: list[str] | None, **_: Any) -> None:
    if target_dsn:
        state = db.target_status(
            target_dsn, stream=task_stream_name(out["task"]), tables=list(tables or []), task=out["task"]
        )
        out["applied"] = state["applied"]
        out["last_full_run"] = state["last_full_run"]
        if state["last_verify"] is not None:
            out["last_verify"] = state["last_verify"]


def last_verify(dag_id: str) -> dict[str, Any] | None:
    """The last ``verify`` task of the DAG as Airflow recorded it (state, end); ``None`` if unknown."""
    try:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        # Airflow's own session and model, queried through them (no direct SQLAlchemy import:
        # its version is Airflow's business, not a dependency of ours).
        with create_session() as session:
            ti = (
                session.query(TaskInstance)
                .filter(TaskInstance.dag_id == dag_id, TaskInstance.task_id == "verify")
                .filter(TaskInstance.end_date.is_not(None))
                .order_by(TaskInstance.end_date.desc())
                .first()
            )
            if ti is None:
                return None
            return {
                "state": str(ti.state),
                "finished": ti.end_date.isoformat(),
                "run_id": ti.run_id,
                "source": "airflow",
            }
    except Exception:  # no metadata DB reachable from here: unknown, not an error of the sync
        return None


def _mib(n: Any) -> str:
    return "-" if n is None else f"{n / 1048576:.1f}MiB"


def status_line(s: dict[str, Any]) -> str:
    """One line of ``zdtp status`` for a :func:`task_status` dict."""
    parts = [f"{s['task']:<24}", f"{s['mode']:<16}"]
    if s["mode"] != "full":
        restarts = "-" if s.get("restarts") is None else s["restarts"]
        parts.append(f"deploy={s.get('deployment', '?')} restarts={restarts}")
        lag = s.get("lag_seconds")
        lag_bytes = s.get("lag_bytes")
        parts.append(
            f"lag={'-' if lag is None else f'{lag:.1f}s'}/{'-' if lag_bytes is None else f'{lag_bytes}B'}"
        )
        parts.append(
            f"slot={s.get('slot', '?')} wal={_mib(s.get('retained_wal_bytes'))}({s.get('wal_verdict', '?')})"
        )
    full = s.get("last_full_run")
    if full:
        done = (
            f"{full['chunks']}/{full['planned_chunks']}" if "planned_chunks" in full else str(full["chunks"])
        )
        result = f"({full['result']})" if full.get("result") else ""
        parts.append(f"full={full['finished'][:19]}{result} rows={full['rows']} chunks={done}")
    else:
        parts.append("full=-")
    verify = s.get("last_verify")
    level = f"[{verify['level']}]" if verify and verify.get("level") else ""
    parts.append(f"verify={verify['state']}{level}@{verify['finished'][:19]}" if verify else "verify=-")
    if s.get("errors"):
        parts.append("errors: " + "; ".join(s["errors"]))
    return "  ".join(parts)
