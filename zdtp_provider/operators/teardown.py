"""TeardownSyncOperator: remove everything one sync task created (``zdtp_provider.teardown``).

Thin: resolves the connections, the task's target tables (from its selection and the source
catalog, when given) and the Kubernetes hook, then calls :func:`teardown_task` and returns its
report (XCom). In a generated DAG it runs only when the run's ``action`` param is ``teardown``
(triggered from the UI with that param); otherwise it skips.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseHook, Context
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from zdtp_provider.operators._kube_operator import ZdtpKubeOperator

TEARDOWN = "teardown"


def _dsn(conn_id: str | None) -> str | None:
    if not conn_id:
        return None
    from zdtp_provider.connections import dsn_from_connection

    return dsn_from_connection(BaseHook.get_connection(conn_id))


def resolve_target_tables(selection: dict[str, Any] | None, source_dsn: str | None) -> list[str]:
    """The task's tables (target = source names), read from the catalog; [] when unreadable."""
    if not selection or not source_dsn:
        return list((selection or {}).get("tables") or [])
    from zdtp_provider.config import SyncTaskConfig
    from zdtp_provider.planner import read_catalog

    try:
        return [e.name for e in read_catalog(source_dsn, SyncTaskConfig.model_validate(selection))]
    except Exception:  # an unreachable/changed source must not block the rest of the teardown
        return list(selection.get("tables") or [])


class TeardownSyncOperator(ZdtpKubeOperator):
    """Remove a sync task's Deployment, Jobs, Pods, Secrets, ConfigMaps, slot, publication and
    target state rows; idempotent; never touches objects zdtp did not create.

    :param task: the sync task name.
    :param source_conn_id / target_conn_id: its databases (``None``: that part is skipped).
    :param target_tables: the task's target tables for the full-copy state rows; or
    :param selection: the sync-task config (dict) to resolve them from the source catalog.
    :param only_when_param: run only when this DAG-run param equals ``teardown``, else skip.
    """

    template_fields: Sequence[str] = (
        *ZdtpKubeOperator.template_fields,
        "task",
        "source_conn_id",
        "target_conn_id",
        "target_tables",
    )

    def __init__(
        self,
        *,
        task: str,
        source_conn_id: str | None = None,
        target_conn_id: str | None = None,
        target_tables: list[str] | None = None,
        selection: dict[str, Any] | None = None,
        only_when_param: str | None = None,
        timeout: float = 120,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.task = task
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.target_tables = target_tables
        self.selection = selection
        self.only_when_param = only_when_param
        self.timeout = timeout

    def execute(self, context: Context) -> dict[str, Any]:
        from zdtp_provider.teardown import teardown_task

        if self.only_when_param and (context.get("params") or {}).get(self.only_when_param) != TEARDOWN:
            raise AirflowSkipException(f"param {self.only_when_param} is not {TEARDOWN!r}")
        source, target = _dsn(self.source_conn_id), _dsn(self.target_conn_id)
        tables = self.target_tables
        if tables is None:
            tables = resolve_target_tables(self.selection, source)
        try:
            report = teardown_task(
                hook=self.hook,
                task=self.task,
                namespace=self.resolved_namespace(),
                source_dsn=source,
                target_dsn=target,
                target_tables=tables,
                timeout=self.timeout,
            )
        except TimeoutError as exc:
            raise AirflowException(str(exc)) from None
        for line in report["removed"]:
            self.log.info("removed %s", line)
        for line in report["kept"]:
            self.log.warning("kept %s: not created by zdtp", line)
        for line in report["skipped"]:
            self.log.info("skipped %s", line)
        return report
