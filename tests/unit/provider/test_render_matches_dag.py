"""``zdtp render`` builds what the DAG's operators build: same objects, names, labels and specs.

For every example sync file, the DAG from ``build_dag`` is taken apart the way Airflow runs it —
the mapped ``copy`` task unmapped per plan entry, the Indexed Job and stream operators given the
XCom values their upstream tasks would push — and each operator renders through its own execute
path (``build_pod_request_obj`` / ``render``). ``render_sync_task`` (what ``zdtp render`` prints)
must produce structurally identical manifests for the same plan and run id, for every mode.
No cluster and no database: the plan is given, the connections come from ``AIRFLOW_CONN_*``.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import REPO
from zdtp_provider.config import load_config
from zdtp_provider.dag_factory import build_dag
from zdtp_provider.k8s import manifest
from zdtp_provider.operators._inputs import lookup_dsns
from zdtp_provider.workload.sync_task import COPY_TASK, STREAM_TASK, render_sync_task, sync_task_options
from zdtp_worker.contract.spec import WorkerSpec

RUN_ID = "manual__2026-12-01T21:00:00+00:00"
SYNC_FILES = sorted((REPO / "dags" / "syncs").glob("*.y*ml"))


@pytest.fixture(autouse=True)
def demo_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    for path in SYNC_FILES:
        config = load_config(path)
        for conn_id in (config.source_conn_id, config.target_conn_id):
            conn = {"conn_type": "postgres", "host": "db.example", "login": "u", "password": "pw"}
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({**conn, "schema": conn_id}))


def _plan(config, tables: list[str]) -> list[WorkerSpec]:
    # Any plan will do: both sides receive the same one (the plan task's XCom).
    return [
        WorkerSpec(mode="full", task=config.name, run_id=RUN_ID, worker=f"w{i}", tables=[{"source": t}])
        for i, t in enumerate(tables)
    ]


def _context(config, task_id: str, map_index: int = -1) -> dict:
    ti = SimpleNamespace(dag_id=config.dag_id, task_id=task_id, map_index=map_index, try_number=1)
    return {"run_id": RUN_ID, "ti": ti, "dag": SimpleNamespace(), "task_state_store": None}


def _dag_documents(config, plan: list[WorkerSpec], tables: list[str]) -> list[dict]:
    """What the DAG's operators build when they run, in the order they apply it."""
    dag = build_dag(config)
    plan_xcom = [s.model_dump(mode="json", by_alias=True) for s in plan]
    docs: list[dict] = []
    if config.mode != "incremental":
        copy = dag.task_dict[COPY_TASK]
        if config.fanout == "indexed-job":
            copy.specs = plan_xcom
            docs += copy.render(_context(config, COPY_TASK)).documents()
        else:
            for i, spec in enumerate(plan_xcom):
                op = copy.unmap({"spec": spec})
                pod = op.build_pod_request_obj(_context(config, COPY_TASK, map_index=i))
                docs += [*(manifest(c) for c in op._companions), manifest(pod)]
    if config.mode != "full":
        # prepare_stream's XCom: the stream spec for the tables it resolved.
        from zdtp_provider.workload import stream_spec

        stream = dag.task_dict[STREAM_TASK]
        stream.spec = stream_spec(config, tables).model_dump(mode="json", by_alias=True)
        docs += stream.render().documents()
    return docs


@pytest.mark.parametrize("path", SYNC_FILES, ids=[p.stem for p in SYNC_FILES])
def test_render_equals_what_the_dag_operators_build(path: Path) -> None:
    config = load_config(path)
    tables = list(config.tables) or ["public.customers", "public.orders", "public.order_items"]
    plan = _plan(config, tables)
    dsns = lookup_dsns(sync_task_options(config))
    rendered = render_sync_task(config, run_id=RUN_ID, full_specs=plan, stream_tables=tables, dsns=dsns)
    ours = [doc for r in rendered for doc in r.documents()]
    theirs = _dag_documents(config, plan, tables)
    assert [(d["kind"], d["metadata"]["name"]) for d in ours] == [
        (d["kind"], d["metadata"]["name"]) for d in theirs
    ]
    assert ours == theirs
    kinds = {d["kind"] for d in ours}
    if config.mode != "full":
        assert "Deployment" in kinds
    if config.mode != "incremental":
        assert kinds & {"Pod", "Job"}


@pytest.mark.parametrize("path", SYNC_FILES, ids=[p.stem for p in SYNC_FILES])
def test_sslmode_and_tls_secret_reach_every_worker_and_the_airflow_side(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync file's ``sslmode`` and ``tls_secret`` go to every worker operator the DAG builds (and
    to ``zdtp render``): the pods mount the TLS Secret and their DSNs carry the forced sslmode with
    the certificate re-pointed into the mount. Plan/verify/prepare_stream, which connect from the
    Airflow worker, get the same sslmode with the connection's own certificate path."""
    from zdtp_provider.dag_factory import _dsn
    from zdtp_provider.k8s.secret import TLS_DIR

    config = load_config(path).model_copy(update={"sslmode": "verify-full", "tls_secret": "pg-tls"})
    for conn_id in (config.source_conn_id, config.target_conn_id):
        conn = {"conn_type": "postgres", "host": "db.example", "login": "u", "password": "pw"}
        conn["extra"] = {"sslmode": "disable", "sslrootcert": "/etc/zdtp/ca.crt"}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({**conn, "schema": conn_id}))

    dag = build_dag(config)
    workers = [dag.task_dict[t] for t in (COPY_TASK, STREAM_TASK) if t in dag.task_dict]
    assert workers
    for op in workers:
        # A mapped copy task keeps its arguments in partial_kwargs until it is unmapped.
        given = getattr(op, "partial_kwargs", None) or vars(op)
        assert (given["sslmode"], given["tls_secret"]) == ("verify-full", "pg-tls"), op.task_id

    tables = list(config.tables) or ["public.customers", "public.orders"]
    plan = _plan(config, tables)
    theirs = _dag_documents(config, plan, tables)
    dsns = lookup_dsns(sync_task_options(config))
    rendered = render_sync_task(config, run_id=RUN_ID, full_specs=plan, stream_tables=tables, dsns=dsns)
    ours = [d for r in rendered for d in r.documents()]
    assert ours == theirs
    pod_specs = [d["spec"] for d in ours if d["kind"] == "Pod"]
    pod_specs += [d["spec"]["template"]["spec"] for d in ours if d["kind"] in ("Job", "Deployment")]
    assert pod_specs
    for spec in pod_specs:
        secrets = {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        assert "pg-tls" in secrets
        assert TLS_DIR in {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    dsns_in_pods = [v for d in ours if d["kind"] == "Secret" for v in d.get("stringData", {}).values()]
    assert dsns_in_pods
    for dsn in dsns_in_pods:
        assert "sslmode=verify-full" in dsn and f"sslrootcert={TLS_DIR}/ca.crt" in dsn

    airflow_side = _dsn(config.source_conn_id, sslmode=config.sslmode)
    assert "sslmode=verify-full" in airflow_side and "sslrootcert=/etc/zdtp/ca.crt" in airflow_side
