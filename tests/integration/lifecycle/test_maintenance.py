"""The shipped ``zdtp_maintenance`` DAG under real Airflow (``dag.test``), the real cluster and a
real PostgreSQL: objects of a sync task whose file is gone are reported, removed only with
``remove``, and a task whose file is still there keeps everything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.fixtures.processes import close_stdin_and_wait
from tests.integration.lifecycle.helpers import catalog_names, make_task_footprint, state_rows
from tests.integration.provider._airflow import RUNNER, DagOutcome
from zdtp_provider.hooks.connection import KubeConnection
from zdtp_provider.maintenance import maintain
from zdtp_provider.teardown import kube_objects
from zdtp_worker.control.names import task_stream_name

pytestmark = [pytest.mark.cluster, pytest.mark.postgres, pytest.mark.airflow]

DAG_FILE = REPO / "dags" / "zdtp_maintenance.py"


class _Maintenance:
    """One Python process runs the DAG file's ``dag.test`` once per request (a run conf on a
    stdin line) and prints each run's task states and XComs: the test checks the cluster and the
    databases between runs, while Airflow's imports and its in-process execution API are paid
    once instead of per run."""

    def __init__(self, syncs: Path, env: dict[str, str]) -> None:
        runner = RUNNER.replace("module.dag.test()", "module.dag.test(run_conf=json.loads(line))")
        body = runner[runner.index("dr = module.dag.test") :]
        runner = runner[: runner.index("dr = module.dag.test")]
        runner += "for line in sys.stdin:\n" + textwrap.indent(body, "    ") + "    sys.stdout.flush()\n"
        full_env = {**os.environ, **env, "ZDTP_SYNCS_DIR": str(syncs), "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", runner, str(DAG_FILE), "zdtp_maintenance"],
            env=full_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )

    def run(self, conf: dict) -> DagOutcome:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(conf) + "\n")
        self.proc.stdin.flush()
        output: list[str] = []
        for line in self.proc.stdout:  # a hung run is ended by pytest's timeout
            if line.startswith("ZDTP-RESULT "):
                tasks = json.loads(line.removeprefix("ZDTP-RESULT "))
                return DagOutcome(tasks=tasks, output="".join(output))
            output.append(line)
        raise AssertionError(f"no result (rc={self.proc.wait()}):\n{''.join(output)[-6000:]}")

    def close(self) -> None:
        close_stdin_and_wait(self.proc)


def _conn_uri(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgres://", 1)


def test_maintenance_dag_reports_then_removes_leftovers_of_deleted_files(
    cluster, namespace, airflow_k8s, db_conns, source_dsn, target_dsn, tmp_path
) -> None:
    gone, kept = f"lc-gone-{uuid.uuid4().hex[:6]}", f"lc-kept-{uuid.uuid4().hex[:6]}"
    for task, table in ((gone, "public.tg"), (kept, "public.tk")):
        make_task_footprint(
            task=task, table=table, source_dsn=source_dsn, target_dsn=target_dsn, namespace=namespace
        )
    syncs = tmp_path / "syncs"
    syncs.mkdir()
    (syncs / "kept.yaml").write_text(
        yaml.safe_dump(
            {
                "name": kept,
                "source_conn_id": "lc_src",
                "target_conn_id": "lc_tgt",
                "tables": ["public.tk"],
                "mode": "full+incremental",
                "namespace": namespace,
            }
        )
    )
    env = {"AIRFLOW_CONN_LC_SRC": _conn_uri(source_dsn), "AIRFLOW_CONN_LC_TGT": _conn_uri(target_dsn)}

    dag = _Maintenance(syncs, env)
    try:
        report_only = dag.run({"remove": False})
        assert report_only.state("leftovers") == "success", report_only.output[-3000:]
        found = report_only.xcom("leftovers")["leftovers"]
        names = {(o["kind"], o["name"]) for o in found}
        stream = task_stream_name(gone)
        assert {
            ("slot", stream),
            ("publication", stream),
            ("cdc_state", stream),
            ("work_queue", gone),
        } <= names
        assert ("Deployment", f"zdtp-{gone}-w0-cdc") in names, found
        assert not [o for o in found if kept in (o["name"], o["task"]) or o["name"] == task_stream_name(kept)]
        assert stream in catalog_names(source_dsn)[0], "report only must not remove anything"

        removed = dag.run({"remove": True})
        assert removed.state("leftovers") == "success", removed.output[-3000:]
        hook = KubeConnection(conn_id="kubernetes_default").hook()
        left = kube_objects(hook, namespace=namespace)
        assert not [o for o in left if o["task"] == gone], left
        assert [o for o in left if o["task"] == kept and o["kind"] == "Deployment"]
        slots, pubs = catalog_names(source_dsn)
        assert stream not in slots and stream not in pubs
        assert task_stream_name(kept) in slots and task_stream_name(kept) in pubs
        rows = state_rows(target_dsn, gone, "public.tg")
        assert rows["cdc_state"] == 0 and rows["work_queue"] == 0
        assert state_rows(target_dsn, kept, "public.tk")["cdc_state"] == 1
        assert removed.state("teardown") == "skipped"

        # From the UI: the teardown param removes a task whose file is still there, from its config.
        torn = dag.run({"teardown": [kept]})
        assert torn.state("teardown") == "success", torn.output[-3000:]
        (report,) = torn.xcom("teardown")
        assert "still declares" in report["note"]
        assert not [o for o in kube_objects(hook, namespace=namespace) if o["task"] == kept]
        slots, pubs = catalog_names(source_dsn)
        assert task_stream_name(kept) not in slots and task_stream_name(kept) not in pubs
        assert set(state_rows(target_dsn, kept, "public.tk").values()) == {0}, (
            "full state by config tables too"
        )
    finally:
        dag.close()


def test_an_unreadable_sync_file_blocks_removal(source_dsn, target_dsn, tmp_path) -> None:
    syncs = tmp_path / "syncs"
    syncs.mkdir()
    (syncs / "broken.yaml").write_text("name: [unclosed\n")
    with __import__("psycopg").connect(source_dsn, autocommit=True) as conn:
        conn.execute("CREATE PUBLICATION zdtp_lc_orphan_pub")
    report = maintain(
        syncs,
        hook=None,
        dsn={"s": source_dsn, "t": target_dsn}.__getitem__,
        source_conn_ids=["s"],
        target_conn_ids=["t"],
        remove=True,
    )
    assert ("publication", "zdtp_lc_orphan_pub") in {(o["kind"], o["name"]) for o in report["leftovers"]}
    assert "broken.yaml" in report["refused"] and report["removed"] == []
    assert "zdtp_lc_orphan_pub" in catalog_names(source_dsn)[1]
