"""A crashed or killed copy worker is retried in every fan-out (the copy resumes from its last
chunk), ``worker_retries`` times: Airflow retries for mapped pods, the Job's own backoff limits."""

from __future__ import annotations

import pytest

from zdtp_provider.config import parse_config
from zdtp_provider.dag_factory import build_dag

BASE = {"name": "shop", "source_conn_id": "s", "target_conn_id": "t", "include": ["public.*"]}


def _copy(fanout: str, **extra):
    dag = build_dag(parse_config({**BASE, "fanout": fanout, **extra}, origin="shop.yaml"))
    return dag.get_task("copy")


def _partial(task) -> dict:
    # A mapped operator keeps its constructor arguments in partial_kwargs.
    return getattr(task, "partial_kwargs", None) or {}


@pytest.mark.parametrize("retries", [None, 0, 5])
def test_mapped_pods_get_airflow_retries(retries: int | None) -> None:
    task = _copy("tasks", **({} if retries is None else {"worker_retries": retries}))
    expected = 2 if retries is None else retries
    assert _partial(task).get("retries", getattr(task, "retries", None)) == expected


def test_jobs_get_backoff_limits() -> None:
    assert _partial(_copy("job-per-worker", worker_retries=4))["job_retries"] == 4
    assert _copy("indexed-job", worker_retries=3).retries_per_index == 3
    assert _copy("queue", worker_retries=1).job_retries == 1
