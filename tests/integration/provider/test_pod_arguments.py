"""KPO pod arguments reach the objects in the API, and without a triggerer every operator completes.

Issue 15's acceptance on the dev cluster: the Pod (FullSyncOperator), Job, Indexed Job, queue Job
and Deployment each carry every honoured KPO argument as the API server stored it (admitted by
Pod Security ``restricted``: a pod template cannot loosen the security context); an unsupported
argument raises while the DAG file is parsed; and with ``[operators] default_deferrable = False``
every operator and the sensor run to completion in-process — any attempt to defer would raise
TaskDeferred here, since no triggerer runs.
"""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client

from tests.integration.provider._airflow import run_dag, write_dag
from tests.integration.provider._context import context
from tests.integration.provider.conftest import wait_for
from tests.unit.provider.kpo_args import assert_honoured, kpo_arguments
from zdtp_provider.operators.incremental import (
    DeleteIncrementalSyncOperator,
    IncrementalSyncOperator,
    ResumeIncrementalSyncOperator,
    StopIncrementalSyncOperator,
)
from zdtp_provider.operators.job import (
    FullSyncJobOperator,
    IndexedFullSyncJobOperator,
    QueueFullSyncJobOperator,
)
from zdtp_provider.sensors.incremental import IncrementalSyncSensor

pytestmark = [pytest.mark.cluster, pytest.mark.airflow]

SPEC = {"task": "orders", "tables": [{"source": "public.orders"}]}
DONE = {"sim.zdtp.io/delay": "1s"}


@pytest.fixture
def pod_refs(cluster, namespace):
    """A PriorityClass and a ServiceAccount the pods may name (admission checks both exist)."""
    priority = f"zt-{uuid.uuid4().hex[:8]}"
    scheduling = client.SchedulingV1Api(cluster.api)
    scheduling.create_priority_class(
        client.V1PriorityClass(metadata=client.V1ObjectMeta(name=priority), value=10)
    )
    cluster.core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="zt-worker"))
    )
    yield priority, "zt-worker"
    scheduling.delete_priority_class(priority)


def _api(cluster, obj) -> dict:
    return cluster.api.sanitize_for_serialization(obj)


def _check_template(cluster, obj, priority: str, sa: str) -> None:
    body = _api(cluster, obj)
    template = body["spec"]["template"]
    assert_honoured(template["metadata"], template["spec"], priority_class=priority, service_account=sa)


@pytest.mark.parametrize("kind", ["job", "indexed", "queue"])
def test_job_operators_apply_kpo_arguments(cluster, namespace, airflow_k8s, pod_refs, tmp_path, kind) -> None:
    priority, sa = pod_refs
    kw = {
        **kpo_arguments(tmp_path, priority_class=priority, service_account=sa),
        "task_id": "j",
        "namespace": namespace,
        "image": "zdtp/worker:dev",
        "deferrable": False,
        "delete_on_success": False,
        "poll_interval": 1,
    }
    kw["annotations"] = {**kw["annotations"], **DONE}
    if kind == "job":
        op = FullSyncJobOperator(spec=SPEC, **kw)
    elif kind == "indexed":
        op = IndexedFullSyncJobOperator(specs=[SPEC, {**SPEC, "worker": "w1"}], parallelism=2, **kw)
    else:
        op = QueueFullSyncJobOperator(spec=SPEC, work_queue="q", items=1, **kw)
    report = op.execute(context(task_id="j"))
    assert report["phase"] == "succeeded"
    (job,) = cluster.batch.list_namespaced_job(namespace).items
    _check_template(cluster, job, priority, sa)
    pods = cluster.core.list_namespaced_pod(namespace).items
    assert pods and all(p.spec.priority_class_name == priority for p in pods)


def test_deployment_applies_kpo_arguments(cluster, namespace, airflow_k8s, pod_refs, tmp_path) -> None:
    priority, sa = pod_refs
    kw = kpo_arguments(tmp_path, priority_class=priority, service_account=sa)
    op = IncrementalSyncOperator(
        task_id="inc",
        namespace=namespace,
        image="zdtp/worker:dev",
        spec=SPEC,
        deferrable=False,
        poll_interval=0.5,
        **kw,
    )
    assert op.execute(context(task_id="inc"))["available_replicas"] == 1
    (dep,) = cluster.apps.list_namespaced_deployment(namespace).items
    _check_template(cluster, dep, priority, sa)


def test_full_sync_pod_applies_kpo_arguments(
    cluster, namespace, airflow_k8s, pod_refs, dag_folder, tmp_path
) -> None:
    priority, sa = pod_refs
    kw = kpo_arguments(tmp_path, priority_class=priority, service_account=sa)
    kw.pop("full_pod_spec")  # a model, not DAG-file source; covered by the unit test
    kw["annotations"] = {**kw["annotations"], "sim.zdtp.io/exit-code": "75", "sim.zdtp.io/delay": "1s"}
    args = ", ".join(f"{k}={v!r}" for k, v in kw.items())
    body = (
        "from zdtp_provider.operators.full import FullSyncOperator\n---\n"
        "FullSyncOperator(task_id='full', namespace=os.environ['ZT_NS'], image='zdtp/worker:dev', "
        f"spec={SPEC!r}, get_logs=False, deferrable=False, poll_interval=1, {args})\n"
    )
    out = run_dag(write_dag(dag_folder, "zt_kpo_pod", body), "zt_kpo_pod", env={"ZT_NS": namespace})
    assert out.state("full") == "failed", out.output[-3000:]  # exit 75: the failed pod is kept
    (pod,) = cluster.core.list_namespaced_pod(namespace).items
    data = _api(cluster, pod)
    meta = data["metadata"]
    meta["labels"]["from-full-spec"] = "yes"  # not given here (see above)
    assert_honoured(meta, data["spec"], priority_class=priority, service_account=sa)


def test_unsupported_argument_fails_the_dag_file_at_parse(dag_folder) -> None:
    body = (
        "from zdtp_provider.operators.job import FullSyncJobOperator\n---\n"
        f"FullSyncJobOperator(task_id='j', image='i', spec={SPEC!r}, cmds=['sh', '-c', 'id'])\n"
    )
    out_path = write_dag(dag_folder, "zt_kpo_bad", body)
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", f"import runpy; runpy.run_path({str(out_path)!r})"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "cmds: FullSyncJobOperator does not support this argument" in result.stderr


def test_every_operator_completes_without_a_triggerer(
    cluster, namespace, airflow_k8s, db_conns, dag_folder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``default_deferrable=False``: no operator is told ``deferrable`` and none defers."""
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")
    common = {"namespace": namespace, "image": "zdtp/worker:dev", "poll_interval": 0.5, "annotations": DONE}
    ctx = context
    assert FullSyncJobOperator(task_id="j", spec=SPEC, **common).execute(ctx(task_id="j"))["phase"] == (
        "succeeded"
    )
    indexed = IndexedFullSyncJobOperator(task_id="i", specs=[SPEC, {**SPEC, "worker": "w1"}], **common)
    assert indexed.execute(ctx(task_id="i"))["phase"] == "succeeded"
    queue = QueueFullSyncJobOperator(task_id="q", spec=SPEC, work_queue="q", items=2, **common)
    assert queue.execute(ctx(task_id="q"))["phase"] == "succeeded"
    stream = IncrementalSyncOperator(task_id="s", spec=SPEC, **common)
    assert stream.execute(ctx(task_id="s"))["available_replicas"] == 1
    target = {"task": "orders", "namespace": namespace, "poll_interval": 0.5, "timeout": 120}
    assert IncrementalSyncSensor(task_id="h", **target).execute(ctx(task_id="h"))["healthy"]
    StopIncrementalSyncOperator(task_id="stop", **target).execute(ctx())
    stream_pods = "app.kubernetes.io/component=incremental-sync"
    assert not cluster.core.list_namespaced_pod(namespace, label_selector=stream_pods).items
    ResumeIncrementalSyncOperator(task_id="resume", **target).execute(ctx())
    DeleteIncrementalSyncOperator(task_id="delete", **target).execute(ctx())
    assert not cluster.apps.list_namespaced_deployment(namespace).items

    # The KPO-based operator, under a real dag.test() with the same setting.
    body = (
        "from zdtp_provider.operators.full import FullSyncOperator\n---\n"
        "FullSyncOperator(task_id='full', namespace=os.environ['ZT_NS'], image='zdtp/worker:dev', "
        f"spec={SPEC!r}, get_logs=False, poll_interval=1, annotations={DONE!r})\n"
    )
    out = run_dag(
        write_dag(dag_folder, "zt_no_triggerer", body),
        "zt_no_triggerer",
        env={"ZT_NS": namespace, "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "False"},
    )
    assert out.state("full") == "success", out.output[-3000:]
    assert "DEFERRED" not in out.output and "Pausing task" not in out.output
    wait_for(lambda: not cluster.core.list_namespaced_pod(namespace).items, what="pods gone")
