"""IncrementalSyncSensor: is the CDC worker healthy — available, not crash-looping, not lagging?

Health comes from :func:`zdtp_provider.triggers.health.stream_health` (Deployment availability,
container restart counts, optionally ``zdtp_cdc_lag_seconds`` through the pod proxy). Deferrable
(default: ``[operators] default_deferrable``): the triggerer polls the same function until the
worker is healthy. It only reads.

WAL guard (with ``source_conn_id``): each check also reads the stream's slot on the source
(:mod:`zdtp_worker.control.status`): retained WAL over ``wal_warn_bytes`` warns, over
``wal_limit_bytes`` (or an invalidated slot) fails the task at once with the advice; a stopped
stream older than ``max_stopped_seconds`` is reported. The report (XCom) carries it under
``wal``. The deferred wait polls Kubernetes only: the guard runs before deferring and on resume.

Status: once healthy, the report also carries ``status``, the task's ``zdtp status`` object
(:func:`zdtp_provider.status.summary`: Deployment, restarts, lag, slot and retained WAL, last full
run, last verify), and ``status_line``, its one-line form, so the Airflow UI shows where the sync
stands. The full run is looked up over ``tables`` (default: the tables of the stream's
publication on the source) and needs ``target_conn_id``; a part that cannot be read is listed
under ``status["errors"]`` and never fails the sensor.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from zdtp_provider.k8s.names import validate_dns_label
from zdtp_provider.operators._inputs import as_airflow_error, default_deferrable
from zdtp_provider.operators._kube_operator import ZdtpKubeOperator
from zdtp_provider.triggers.deployment import ZdtpDeploymentStateTrigger
from zdtp_provider.triggers.health import parse_lag_seconds, stream_health
from zdtp_provider.workload import deployment_name

__all__ = ["IncrementalSyncSensor", "parse_lag_seconds"]


class IncrementalSyncSensor(BaseSensorOperator, ZdtpKubeOperator):
    """Succeeds when the incremental worker is healthy; pushes the health report.

    :param max_restarts: a pod restarted this often (or more) counts as crash-looping.
    :param max_lag_seconds: also require ``zdtp_cdc_lag_seconds`` below this (reads /metrics).
    :param fail_on_crash_loop: fail the task at once instead of poking on (not when deferred).
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param source_conn_id: the source's connection: enables the WAL guard (slot of ``task``, or
        ``slot``); ``target_conn_id`` adds the applied position (and "stopped since" before PG 17).
    :param wal_warn_bytes / wal_limit_bytes: retained WAL that warns / fails the sensor.
    :param max_stopped_seconds: a stream whose slot is unread longer than this is reported.
    :param tables: the stream's target tables, for the last full run in ``status`` (default: the
        tables of the stream's publication, read from the source).
    """

    template_fields: Sequence[str] = (*ZdtpKubeOperator.template_fields, "name", "task")

    def __init__(
        self,
        *,
        name: str | None = None,
        task: str | None = None,
        worker: str = "w0",
        max_restarts: int = 3,
        max_lag_seconds: float | None = None,
        health_port: int = 8080,
        fail_on_crash_loop: bool = False,
        deferrable: bool | None = None,
        source_conn_id: str | None = None,
        target_conn_id: str | None = None,
        slot: str | None = None,
        wal_warn_bytes: int | None = None,
        wal_limit_bytes: int | None = None,
        max_stopped_seconds: float | None = None,
        tables: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.tables = tables
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.slot = slot
        self.wal_limits = (wal_warn_bytes, wal_limit_bytes, max_stopped_seconds)
        self.name = name
        self.task = task
        self.worker = worker
        self.max_restarts = max_restarts
        self.max_lag_seconds = max_lag_seconds
        self.health_port = health_port
        self.fail_on_crash_loop = fail_on_crash_loop
        self.deferrable = default_deferrable() if deferrable is None else deferrable

    def _target(self) -> tuple[str, str]:
        if not self.name and not self.task:
            raise AirflowException("name: give the Deployment name or the sync task")
        with as_airflow_error():
            name = validate_dns_label(self.name or deployment_name(self.task, self.worker), field="name")
        return name, self.resolved_namespace()

    def _health_args(self) -> dict[str, Any]:
        return {
            "max_restarts": self.max_restarts,
            "max_lag_seconds": self.max_lag_seconds,
            "health_port": self.health_port,
        }

    def health(self) -> dict[str, Any]:
        name, namespace = self._target()
        report = stream_health(self.hook, name=name, namespace=namespace, **self._health_args())
        if self.source_conn_id:
            report["wal"] = self._wal_guard()
        return report

    def _wal_guard(self) -> dict[str, Any]:
        """The slot's status and verdict; fails the task over the limit (no retry helps)."""
        from zdtp_provider.status import wal_check

        wal = wal_check(
            task=self.task,
            slot=self.slot,
            source_conn_id=self.source_conn_id,  # type: ignore[arg-type]
            target_conn_id=self.target_conn_id,
            limits=self.wal_limits,
        )
        for message in wal["messages"]:
            self.log.warning("WAL guard: %s", message)
        if wal["verdict"] == "fail":
            raise AirflowFailException("WAL guard: " + "; ".join(wal["messages"]))
        return wal

    def _with_status(self, report: dict[str, Any]) -> dict[str, Any]:
        """``report`` plus the task's status summary and its line (the XCom the UI shows)."""
        from zdtp_provider.status import connection_dsn, status_line, summary
        from zdtp_worker.control import status as db
        from zdtp_worker.control.names import task_stream_name

        task = self.task or report["name"]
        errors: list[str] = []

        def dsn(conn_id: str | None) -> str | None:
            try:
                return connection_dsn(conn_id) if conn_id else None
            except Exception as exc:  # reported in the summary, never a sensor failure
                errors.append(f"connection {conn_id}: {exc}")
                return None

        source, target = dsn(self.source_conn_id), dsn(self.target_conn_id)
        tables = list(self.tables or [])
        if not tables and source and target and self.task:
            try:
                tables = db.publication_tables(source, task_stream_name(self.task))
            except Exception as exc:
                errors.append(f"stream tables: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        status = summary(
            task=task,
            mode="stream",
            namespace=report["namespace"],
            hook=None,
            health=report,
            # The slot part needs the task's slot name: without ``task`` the sensor knows a
            # Deployment only.
            source_dsn=source if self.task else None,
            target_dsn=target if self.task else None,
            tables=tables,
        )
        status["errors"] = errors + status["errors"]
        report["status"] = status
        report["status_line"] = status_line(status)
        self.log.info("status: %s", report["status_line"])
        return report

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        report = self.health()
        if report["healthy"]:
            return self._with_status(report)
        self.defer(
            trigger=ZdtpDeploymentStateTrigger(
                state="healthy",
                health=self._health_args(),
                **self.trigger_kwargs(name=report["name"], namespace=report["namespace"]),
            ),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        if event.get("status") != "success":
            raise AirflowException(event.get("message") or f"waiting for health failed: {event}")
        report = event["report"]
        if self.source_conn_id:
            report["wal"] = self._wal_guard()
        return self._with_status(report)

    def poke(self, context: Context) -> PokeReturnValue:
        report = self.health()
        if not report["healthy"]:
            self.log.info("%s is unhealthy: %s", report["name"], "; ".join(report["reasons"]))
            if self.fail_on_crash_loop and report.get("crash_looping"):
                raise AirflowException(f"{report['name']}: " + "; ".join(report["reasons"]))
        if report["healthy"]:
            report = self._with_status(report)
        return PokeReturnValue(is_done=report["healthy"], xcom_value=report)
