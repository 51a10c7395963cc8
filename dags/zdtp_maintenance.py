"""``zdtp_maintenance``: zdtp objects left by sync tasks whose file is gone from ``dags/syncs``.

Runs daily and on demand. Triggered with the param ``teardown`` (sync task names), its
``teardown`` task removes those tasks' workers, slot, publication and state, like ``zdtp
teardown FILE`` (their files stay: delete them, or the next run recreates everything).
 It reports every such Deployment, Job, Pod, Secret, ConfigMap,
replication slot, publication and ``zdtp`` state row (the task's XCom and log); triggered with the
param ``remove`` = true it also removes them (what ``zdtp teardown`` removes for a live task). It
looks in the namespaces and connections the remaining sync tasks use, plus the ones given as
params (a deleted task may have used others). See ``zdtp_provider.maintenance``.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, BaseHook, Param, get_current_context, task

SYNCS_DIR = Path(os.environ.get("ZDTP_SYNCS_DIR", Path(__file__).with_name("syncs")))


def _dsn(conn_id: str) -> str:
    from zdtp_provider.connections import dsn_from_connection

    return dsn_from_connection(BaseHook.get_connection(conn_id))


with DAG(
    dag_id="zdtp_maintenance",
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    tags=["zdtp", "maintenance"],
    doc_md=__doc__,
    params={
        "remove": Param(False, type="boolean", title="Remove", description="Remove what is found."),
        "namespaces": Param([], type="array", items={"type": "string"}, title="More namespaces"),
        "source_conn_ids": Param([], type="array", items={"type": "string"}, title="More sources"),
        "target_conn_ids": Param([], type="array", items={"type": "string"}, title="More targets"),
        "kubernetes_conn_id": Param("kubernetes_default", type="string", title="Kubernetes connection"),
        "teardown": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Tear down sync tasks",
            description="Names of sync tasks (files still present) to remove everything of.",
        ),
    },
) as dag:

    @task(task_id="leftovers")
    def leftovers() -> dict[str, Any]:
        """Find (and with ``remove``, remove) objects of sync tasks no file declares."""
        from zdtp_provider.hooks.connection import KubeConnection
        from zdtp_provider.maintenance import maintain

        params = get_current_context()["params"]
        report = maintain(
            SYNCS_DIR,
            hook=KubeConnection(conn_id=params["kubernetes_conn_id"]).hook(),
            dsn=_dsn,
            namespaces=params["namespaces"],
            source_conn_ids=params["source_conn_ids"],
            target_conn_ids=params["target_conn_ids"],
            remove=params["remove"],
        )
        for obj in report["leftovers"]:
            print(f"leftover {obj['kind']} {obj['name']} ({obj['where']}) task={obj['task'] or '?'}")
        if not report["leftovers"]:
            print("no leftovers of removed sync tasks")
        if report.get("refused"):
            print(report["refused"])
        for line in report["removed"]:
            print(f"removed {line}")
        return report

    @task(task_id="teardown")
    def teardown() -> list[dict[str, Any]]:
        """Remove everything of the sync tasks named in the ``teardown`` param."""
        from airflow.sdk.exceptions import AirflowSkipException

        from zdtp_provider.hooks.connection import KubeConnection
        from zdtp_provider.maintenance import teardown_declared

        names = get_current_context()["params"]["teardown"]
        if not names:
            raise AirflowSkipException("param teardown names no sync task")
        reports = teardown_declared(
            SYNCS_DIR, names, hook_for=lambda conn_id: KubeConnection(conn_id=conn_id).hook(), dsn=_dsn
        )
        for report in reports:
            for line in report["removed"] or ["nothing left"]:
                print(f"{report['task']}: removed {line}")
            for line in report["kept"]:
                print(f"{report['task']}: kept {line} (not created by zdtp)")
            print(report["note"])
        return reports

    leftovers()
    teardown()
