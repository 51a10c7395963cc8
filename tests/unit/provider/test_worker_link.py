"""The 'Worker on Kubernetes' extra link: on every worker task of a generated DAG, kept through
DAG serialization (the UI's copy), and filled from the configured template."""

from __future__ import annotations

import pytest

from tests.conftest import REPO
from zdtp_provider.config import load_config
from zdtp_provider.dag_factory import build_dag
from zdtp_provider.links import WorkerObjectLink, worker_url
from zdtp_provider.workload.sync_task import COPY_TASK, STREAM_TASK


@pytest.mark.parametrize("sync_file", ["shop.yaml", "shop_indexed.yaml", "shop_full_stream.yaml"])
def test_worker_tasks_carry_the_link_through_serialization(sync_file: str) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    dag = build_dag(load_config(REPO / "dags" / "syncs" / sync_file))
    data = DagSerialization.to_dict(dag)
    tasks = {t["__var"]["task_id"]: t["__var"] for t in data["dag"]["tasks"]}
    workers = [t for t in (COPY_TASK, STREAM_TASK) if t in tasks]
    link_key = WorkerObjectLink().xcom_key
    assert workers
    for task_id in workers:
        # Airflow 3 keeps name -> XCom key; the UI reads the URL the worker stored under it.
        assert tasks[task_id]["_operator_extra_links"] == {WorkerObjectLink.name: link_key}, task_id
    restored = DagSerialization.from_dict(data)
    for task_id in workers:
        assert WorkerObjectLink.name in restored.task_dict[task_id].extra_links


def test_url_from_template_and_no_link_without_one(monkeypatch: pytest.MonkeyPatch) -> None:
    template = "https://headlamp.example/c/main/{resource}/{namespace}/{name}"
    assert (
        worker_url(template, kind="Deployment", namespace="sync", name="zdtp-shop-w0-cdc")
        == "https://headlamp.example/c/main/deployments/sync/zdtp-shop-w0-cdc"
    )

    class Ran:
        def worker_object(self) -> tuple[str, str, str]:
            return ("Pod", "sync", "zdtp-shop-w0-abc")

    monkeypatch.delenv("AIRFLOW__ZDTP__WORKER_LINK_TEMPLATE", raising=False)
    assert WorkerObjectLink().get_link(Ran(), ti_key=None) == ""
    monkeypatch.setenv("AIRFLOW__ZDTP__WORKER_LINK_TEMPLATE", "{kind}:{namespace}/{name}")
    assert WorkerObjectLink().get_link(Ran(), ti_key=None) == "Pod:sync/zdtp-shop-w0-abc"
    assert WorkerObjectLink().get_link(object(), ti_key=None) == ""  # a task that has not run
