"""Job operators show the workers' log lines in the task log while they wait, and on resume;
the task's extra link points at the Job it ran.

On the dev cluster every simulated container logs one fixed line (dev/cluster/up.sh), read back
through the real apiserver → kwok log path, never followed. Unit checks of the line filter use
a line the worker's own logger writes.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from airflow.sdk.exceptions import TaskDeferred

from tests.integration.provider._context import context
from zdtp_provider.links import WorkerObjectLink
from zdtp_provider.operators import _job_lifecycle
from zdtp_provider.operators._progress import after_last, describe
from zdtp_provider.operators.job import FullSyncJobOperator

SPEC = {"task": "orders", "tables": [{"source": "public.orders"}]}
RESULT = json.dumps({"status": "ok", "mode": "full", "run_id": "r", "worker": "w", "rows": 7})
KWOK_LINE = "zdtp dev cluster: pods are simulated by KWOK"


def _op(namespace: str, *, deferrable: bool) -> FullSyncJobOperator:
    return FullSyncJobOperator(
        task_id="job",
        namespace=namespace,
        image="zdtp/worker:dev",
        spec=SPEC,
        deferrable=deferrable,
        poll_interval=0.5,
        annotations={"sim.zdtp.io/delay": "4s", "sim.zdtp.io/message": RESULT},
    )


@pytest.mark.cluster
@pytest.mark.airflow
def test_waiting_in_process_logs_each_worker_line_once(
    cluster, namespace, airflow_k8s, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_job_lifecycle, "PROGRESS_EVERY_SECONDS", 0.0)  # read at every poll
    monkeypatch.setenv(
        "AIRFLOW__ZDTP__WORKER_LINK_TEMPLATE", "https://k8s.example/{resource}/{namespace}/{name}"
    )
    op = _op(namespace, deferrable=False)
    capsys.readouterr()
    report = op.execute(context())
    assert report["phase"] == "succeeded"
    # The task log (Airflow's structlog output, on stdout here).
    worker_lines = [line for line in capsys.readouterr().out.splitlines() if KWOK_LINE in line]
    assert len(worker_lines) == 1, worker_lines
    assert f"{report['pods'][0]['pod']}: {KWOK_LINE}" in worker_lines[0]
    job = report["pods"][0]["pod"].rsplit("-", 1)[0]
    link = WorkerObjectLink().get_link(op, ti_key=None)
    assert link == f"https://k8s.example/jobs/{namespace}/{job}"


@pytest.mark.cluster
@pytest.mark.airflow
def test_resuming_after_deferral_logs_the_last_worker_lines(
    cluster, namespace, airflow_k8s, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__ZDTP__WORKER_LINK_TEMPLATE", "{kind} {namespace}/{name}")
    op = _op(namespace, deferrable=True)
    ctx = context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    classpath, kwargs = deferred.value.trigger.serialize()
    module, _, name = classpath.rpartition(".")
    trigger_cls = getattr(__import__(module, fromlist=[name]), name)

    async def first_event():
        async for event in trigger_cls(**kwargs).run():
            return event.payload

    event = asyncio.run(first_event())
    resumed = _op(namespace, deferrable=True)  # a fresh instance, as after the triggerer
    capsys.readouterr()
    report = resumed.execute_complete(ctx, event)
    assert report["phase"] == "succeeded"
    assert KWOK_LINE in capsys.readouterr().out
    # The resumed instance (a new process in Airflow) links to the Job the first one created.
    assert WorkerObjectLink().get_link(resumed, ti_key=None) == f"Job {namespace}/{event['name']}"


def test_filter_keeps_progress_drops_bookkeeping_and_resumes_after_the_last_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from zdtp_worker import logs

    logs.event("progress", table="public.orders", rows=1200)
    logs.event("chunk_start", table="public.orders", chunk=3)
    written = capsys.readouterr().err.splitlines()
    progress, chunk_start = (f"2026-12-01T00:00:0{i}Z {line}" for i, line in enumerate(written))
    shown = describe(progress)
    assert shown is not None and shown.startswith("progress ") and "rows=1200" in shown
    assert "run_id=" not in shown and "ts=" not in shown
    assert describe(chunk_start) is None
    assert (
        describe("2026-12-01T00:00:00Z Traceback (most recent call last):")
        == "Traceback (most recent call last):"
    )
    lines = ["t1 a", "t2 b", "t3 c"]
    assert after_last(lines, "t2 b") == ["t3 c"]
    assert after_last(lines, "t3 c") == []
    assert after_last(lines, "t0 gone") == lines and after_last(lines, None) == lines
