"""Every fan-out through ``zdtp render`` and through the DAG's own operators: the same objects,
and each one accepted by the dev cluster's apiserver (server-side dry run, restricted Pod
Security namespace), so a rendered manifest is one Kubernetes would take as it is."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client

from tests.fixtures.cluster import Cluster
from zdtp_provider.cli import build_parser, render_documents
from zdtp_provider.config import SyncTaskConfig
from zdtp_provider.dag_factory import build_dag
from zdtp_provider.operators._inputs import lookup_dsns
from zdtp_provider.workload.sync_task import COPY_TASK, render_sync_task, sync_task_options
from zdtp_worker.contract.spec import WorkerSpec

pytestmark = pytest.mark.cluster

RUN_ID = "manual__2026-12-01T22:00:00+00:00"
FANOUTS = ["tasks", "indexed-job", "job-per-worker", "queue", "queue-drain"]
TABLES = ["public.a", "public.b", "public.c"]


def _config(fanout: str, namespace: str = "zdtp", **extra: Any) -> SyncTaskConfig:
    return SyncTaskConfig.model_validate(
        {
            **extra,
            "name": "batchy",
            "source_conn_id": "batch_src",
            "target_conn_id": "batch_tgt",
            "tables": TABLES,
            "workers": 2,
            "fanout": fanout,
            "namespace": namespace,
        }
    )


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> None:
    for conn_id in ("batch_src", "batch_tgt"):
        conn = {
            "conn_type": "postgres",
            "host": "db.example",
            "login": "u",
            "password": "pw",
            "schema": conn_id,
        }
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def _plan(config: SyncTaskConfig) -> list[WorkerSpec]:
    return [
        WorkerSpec(mode="full", task=config.name, run_id=RUN_ID, worker=f"w{i}", tables=[{"source": t}])
        for i, t in enumerate(TABLES)
    ]


def _context(config: SyncTaskConfig, map_index: int = -1) -> dict[str, Any]:
    ti = SimpleNamespace(dag_id=config.dag_id, task_id=COPY_TASK, map_index=map_index, try_number=1)
    return {"run_id": RUN_ID, "ti": ti, "dag": SimpleNamespace(), "task_state_store": None}


def _operator_documents(config: SyncTaskConfig, plan: list[WorkerSpec]) -> list[dict]:
    """What the copy task's operator(s) build at run time (the queue fan-outs: the work Job; the
    enqueue Job goes through the same ``render_job`` as job-per-worker)."""
    copy = build_dag(config).task_dict[COPY_TASK]
    xcom = [s.model_dump(mode="json", by_alias=True) for s in plan]
    if config.fanout in ("queue", "queue-drain"):
        copy.spec = xcom
        if copy.pod_per_item:
            copy.items = len(plan)  # what execute() takes from the enqueue pod (render: one per worker)
        return copy.render(_context(config)).documents()
    docs: list[dict] = []
    for i, spec in enumerate(xcom):
        op = copy.unmap({"spec": spec})
        docs += op.render(_context(config, map_index=i)).documents()
    return docs


@pytest.mark.parametrize("fanout", ["job-per-worker", "queue", "queue-drain"])
def test_render_equals_what_the_copy_operator_builds(fanout: str) -> None:
    config = _config(fanout)
    plan = _plan(config)
    dsns = lookup_dsns(sync_task_options(config))
    rendered = render_sync_task(config, run_id=RUN_ID, full_specs=plan, dsns=dsns)
    ours = [doc for r in rendered for doc in r.documents()]
    theirs = _operator_documents(config, plan)
    if fanout == "job-per-worker":
        assert ours == theirs and len([d for d in ours if d["kind"] == "Job"]) == 3
        return
    # queue fan-outs: render shows the enqueue Job first, then the queue Job the operator builds.
    jobs = [d for d in ours if d["kind"] == "Job"]
    assert [j["spec"]["template"]["spec"]["containers"][0]["args"][:2] for j in jobs] == [
        ["full", "--enqueue"],
        ["full", "--queue"],
    ]
    assert rendered[1].documents() == theirs
    spec = theirs[-1]["spec"]
    if fanout == "queue":
        assert spec["completions"] == 3 and "--queue-mode" in str(spec) and "one" in str(spec)
    else:
        assert spec.get("completions") is None and spec["parallelism"] == 2
    env = json.dumps(theirs[-1])
    assert "batchy." in env  # the run's own queue name, in the args


def _dry_run_create(cluster: Cluster, namespace: str, doc: dict) -> None:
    kind, body = doc["kind"], {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}
    if kind == "Job":
        cluster.batch.create_namespaced_job(namespace, body, dry_run="All")
    elif kind == "CronJob":
        cluster.batch.create_namespaced_cron_job(namespace, body, dry_run="All")
    elif kind == "Pod":
        cluster.core.create_namespaced_pod(namespace, body, dry_run="All")
    elif kind == "Secret":
        cluster.core.create_namespaced_secret(namespace, body, dry_run="All")
    elif kind == "ConfigMap":
        cluster.core.create_namespaced_config_map(namespace, body, dry_run="All")
    else:  # pragma: no cover - a new kind must be added here
        raise AssertionError(f"no dry run for {kind}")


@pytest.mark.parametrize("fanout", FANOUTS)
def test_zdtp_render_output_passes_a_server_side_dry_run(
    fanout: str, cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``zdtp render``'s documents (its own code path, from a plan of three workers) are accepted
    by the apiserver — schema, defaulting and the namespace's restricted Pod Security."""
    import zdtp_provider.cli as cli

    config = _config(fanout, namespace=namespace)
    monkeypatch.setattr(cli, "load_config", lambda _path: config)
    monkeypatch.setattr("zdtp_provider.planner.read_catalog", lambda _dsn, _cfg: [])
    monkeypatch.setattr("zdtp_provider.planner.plan_workers", lambda cfg, est, run_id, workers: _plan(cfg))
    args = build_parser().parse_args(
        ["render", "x.yaml", "--run-id", RUN_ID, "--source-dsn", "postgresql://x"]
    )
    docs, _note = render_documents(config, args)
    kinds = [d["kind"] for d in docs]
    assert kinds.count("Job") == {"tasks": 0, "indexed-job": 1, "job-per-worker": 3}.get(fanout, 2), kinds
    for doc in docs:
        try:
            _dry_run_create(cluster, namespace, doc)
        except client.ApiException as exc:  # pragma: no cover - the finding
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']} rejected: {exc.status} {exc.body}")
    assert not cluster.batch.list_namespaced_job(namespace).items  # a dry run creates nothing


def test_cronjob_render_equals_the_operator_apply_and_passes_a_dry_run(
    cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``schedule_on: kubernetes``: ``zdtp render`` shows the CronJob the DAG's ``cronjob`` task
    applies (Forbid, deadline, history, time zone, run id from the Job's name), and the
    apiserver accepts it."""
    from zdtp_provider.operators.cronjob import FullSyncCronJobOperator
    from zdtp_provider.workload.batch import render_cronjob

    config = _config("tasks", namespace=namespace, schedule="*/5 * * * *", schedule_on="kubernetes")
    plan = _plan(config)
    dsns = lookup_dsns(sync_task_options(config))
    (rendered,) = render_sync_task(config, run_id=RUN_ID, full_specs=plan, dsns=dsns)
    docs = rendered.documents()
    assert [d["kind"] for d in docs] == ["Secret", "CronJob"]
    cron = docs[-1]["spec"]
    assert cron["schedule"] == "*/5 * * * *" and cron["concurrencyPolicy"] == "Forbid"
    assert (cron["timeZone"], cron["startingDeadlineSeconds"]) == ("UTC", 300)
    assert (cron["successfulJobsHistoryLimit"], cron["failedJobsHistoryLimit"]) == (3, 3)
    env = cron["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['batch.kubernetes.io/job-name']"
    assert cron["jobTemplate"]["spec"]["podFailurePolicy"]  # the same exit-code policy as every Job
    # The operator's apply renders the same objects.
    op = build_dag(config).task_dict["cronjob"]
    assert isinstance(op, FullSyncCronJobOperator)
    ti = SimpleNamespace(dag_id=config.dag_id, task_id="cronjob", map_index=-1, try_number=1)
    ctx = op.render_context({**_context(config), "ti": ti})
    options = sync_task_options(config)
    again = render_cronjob(
        options, plan, schedule="*/5 * * * *", time_zone="UTC", starting_deadline_seconds=300, **ctx
    )
    assert again.documents()[-1]["spec"] == docs[-1]["spec"]
    for doc in docs:
        _dry_run_create(cluster, namespace, doc)
