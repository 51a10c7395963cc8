"""``queue_backend: redis`` from a sync-task YAML: the config takes ``queue_conn_id`` (an Airflow
``redis`` connection), the URL reaches the enqueue and work Jobs only through the credentials
Secret (``queue-dsn`` key, ``ZDTP_QUEUE_DSN_FILE``), never as a literal in the workload, and
``zdtp render`` builds what the DAG's operator builds. A wrong connection type fails the task
before any Kubernetes call. No cluster: connections come from ``AIRFLOW_CONN_*``.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowException
from pydantic import ValidationError

from zdtp_provider.config import SyncTaskConfig
from zdtp_provider.dag_factory import build_dag
from zdtp_provider.k8s.secret import QUEUE_KEY
from zdtp_provider.queue_connection import redis_url
from zdtp_provider.workload.sync_task import COPY_TASK, render_sync_task
from zdtp_worker.contract.envelope import CREDENTIALS_DIR, dsn_file_env
from zdtp_worker.contract.spec import WorkerSpec

RUN_ID = "manual__2026-12-01T23:00:00+00:00"
PASSWORD = "s3cr3t-queue-pw"
URL = f"redis://:{PASSWORD}@redis.example:6380/3"
BASE = {
    "name": "orders",
    "source_conn_id": "zr_source",
    "target_conn_id": "zr_target",
    "tables": ["public.orders", "public.items"],
    "fanout": "queue",
    "queue_backend": "redis",
    "queue_conn_id": "zr_queue",
}


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> None:
    for conn_id in ("zr_source", "zr_target"):
        pg = {"conn_type": "postgres", "host": "db.example", "login": "u", "password": "pw", "schema": "d"}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(pg))
    queue = {"conn_type": "redis", "host": "redis.example", "port": 6380, "password": PASSWORD}
    monkeypatch.setenv("AIRFLOW_CONN_ZR_QUEUE", json.dumps({**queue, "extra": {"db": 3}}))
    pg_as_queue = {"conn_type": "postgres", "host": "db.example", "password": "pw"}
    monkeypatch.setenv("AIRFLOW_CONN_ZR_NOT_REDIS", json.dumps(pg_as_queue))


def _context(config: SyncTaskConfig) -> dict:
    ti = SimpleNamespace(dag_id=config.dag_id, task_id=COPY_TASK, map_index=-1, try_number=1)
    return {"run_id": RUN_ID, "ti": ti, "dag": SimpleNamespace(), "task_state_store": None}


def _plan(config: SyncTaskConfig) -> list[dict]:
    return [
        WorkerSpec(mode="full", task=config.name, run_id=RUN_ID, worker=f"w{i}", tables=[{"source": t}])
        .model_dump(mode="json", by_alias=True)
        for i, t in enumerate(config.tables)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"queue_conn_id": None}, "queue_backend redis needs queue_conn_id"),
        ({"queue_backend": "postgres"}, "only it takes one"),
        ({"queue_conn_id": "bad id!"}, "must be an Airflow connection id"),
    ],
)
def test_config_requires_queue_conn_id_with_redis_only(change: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SyncTaskConfig.model_validate({**BASE, **change})


def test_redis_url_from_an_airflow_connection() -> None:
    conn = SimpleNamespace(
        conn_type="redis",
        host="::1",
        port=None,
        login="q user",
        password="p@ss:/w",
        extra_dejson={"ssl": True},
    )
    assert redis_url(conn) == "rediss://q%20user:p%40ss%3A%2Fw@[::1]:6379/0"
    with pytest.raises(ValueError, match="conn_type 'postgres'; queue_backend redis needs a 'redis'"):
        redis_url(SimpleNamespace(conn_type="postgres", host="h", extra_dejson={}))
    with pytest.raises(ValueError, match="ssl_ca_certs"):
        redis_url(SimpleNamespace(conn_type="redis", host="h", extra_dejson={"ssl_ca_certs": "/ca.pem"}))


def test_queue_jobs_mount_the_url_from_the_secret_and_render_matches_the_dag() -> None:
    config = SyncTaskConfig.model_validate(BASE)
    op = build_dag(config).task_dict[COPY_TASK]
    op.spec = _plan(config)
    context = _context(config)
    ctx = op.render_context(context)
    assert ctx["dsns"][QUEUE_KEY] == URL  # what the Airflow-side queue check reads, too
    op.items = len(op.spec)  # what the enqueue pod reports; zdtp render assumes one item per worker
    work = op.render(context)

    rendered = render_sync_task(
        config,
        run_id=RUN_ID,
        full_specs=[WorkerSpec.model_validate(s) for s in op.spec],
        dsns=ctx["dsns"],
    )
    enqueue, queue_job = rendered
    assert queue_job.documents() == work.documents()  # zdtp render == the DAG's operator
    for job in (enqueue, queue_job):
        (secret,) = [c for c in job.documents() if c["kind"] == "Secret"]
        assert secret["stringData"][QUEUE_KEY] == URL
        body = json.dumps(job.body())
        assert PASSWORD not in body and "redis://" not in body  # no literal in args, env or labels
        pod = job.body()["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env[dsn_file_env("queue")] == f"{CREDENTIALS_DIR}/{QUEUE_KEY}"
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        (volume,) = [v for v in pod["volumes"] if v["name"] == mounts[CREDENTIALS_DIR]]
        assert volume["secret"]["secretName"] == secret["metadata"]["name"]


def test_only_the_queue_jobs_get_the_url() -> None:
    """A full+incremental task's stream Deployment shares the DSNs but not the queue URL."""
    config = SyncTaskConfig.model_validate({**BASE, "mode": "full+incremental"})
    op = build_dag(config).task_dict[COPY_TASK]
    dsns = op.render_context(_context(config))["dsns"]
    specs = [WorkerSpec.model_validate(s) for s in _plan(config)]
    rendered = render_sync_task(
        config, run_id=RUN_ID, full_specs=specs, stream_tables=["public.orders"], dsns=dsns
    )
    kinds = [r.body()["kind"] for r in rendered]
    assert kinds == ["Job", "Job", "Deployment"]
    deployment_secret = next(c for c in rendered[-1].documents() if c["kind"] == "Secret")
    assert QUEUE_KEY not in deployment_secret["stringData"]
    env = {e["name"] for e in rendered[-1].body()["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert dsn_file_env("queue") not in env


def test_a_non_redis_queue_connection_fails_before_any_kubernetes_call() -> None:
    # kubernetes_conn_id names no connection: any Kubernetes access would fail differently.
    config = SyncTaskConfig.model_validate(
        {**BASE, "queue_conn_id": "zr_not_redis", "kubernetes_conn_id": "zr_no_such_cluster"}
    )
    op = build_dag(config).task_dict[COPY_TASK]
    op.spec = _plan(config)
    with pytest.raises(
        AirflowException, match=r"^queue_conn_id: connection 'zr_not_redis' has conn_type 'postgres'"
    ):
        op.execute(_context(config))
