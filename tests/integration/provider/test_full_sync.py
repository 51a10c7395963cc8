"""FullSyncOperator on the real dev cluster under real Airflow (dag.test in a subprocess)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.integration.provider._airflow import finish, run_dag, start_dag, write_dag
from tests.integration.provider.conftest import wait_for

# Five of the seven tests make one run_dag each: one Airflow process serves them (see
# one_airflow); the two SIGTERM tests start their own.
pytestmark = [pytest.mark.cluster, pytest.mark.airflow, pytest.mark.usefixtures("one_airflow_per_module")]

RESULT = {"status": "ok", "exit_code": 0, "mode": "full", "run_id": "r", "worker": "w0", "rows": 42}

IMPORTS = "from zdtp_provider.operators.full import FullSyncOperator\n"


def _dag(folder: Path, dag_id: str, **op_kwargs) -> Path:
    args = ", ".join(f"{k}={v!r}" for k, v in op_kwargs.items())
    body = (
        IMPORTS
        + "\n---\n"
        + f"FullSyncOperator(task_id='full', namespace=os.environ['ZT_NS'], image='zdtp/worker:dev', "
        f"spec={{'task': 'orders', 'tables': [{{'source': 'public.orders'}}]}}, get_logs=False, "
        f"poll_interval=1, {args})\n"
    )
    return write_dag(folder, dag_id, body)


def _grep_home(home: Path, needle: str) -> list[str]:
    """Every file under the Airflow home holding ``needle`` — logs, and the metadata DB (with its
    -wal/-journal) where rendered template fields, XComs and task-instance data live."""
    raw = needle.encode()
    hits = []
    for path in home.rglob("*"):
        if path.is_file():
            try:
                if raw in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                pass
    assert (home / "airflow.db").is_file(), "the metadata DB the grep must cover is not there"
    return hits


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_success_pushes_worker_summary_and_cleans_up(
    cluster, namespace, airflow_k8s, dag_folder, db_conns, deferrable
) -> None:
    path = _dag(
        dag_folder,
        "zt_full_ok",
        deferrable=deferrable,
        source_conn_id="zt_src",
        target_conn_id="zt_tgt",
        annotations={"sim.zdtp.io/message": json.dumps(RESULT), "sim.zdtp.io/delay": "1s"},
    )
    out = run_dag(path, "zt_full_ok", env={"ZT_NS": namespace})
    assert out.state("full") == "success", out.output[-3000:]
    assert out.xcom("full") == RESULT
    # Succeeded pod deleted; its Secret (owned by the pod) garbage-collected with it.
    wait_for(lambda: not cluster.core.list_namespaced_pod(namespace).items, what="pod deleted")
    wait_for(
        lambda: not cluster.core.list_namespaced_secret(namespace, label_selector="zdtp.io/part").items,
        what="credentials Secret garbage-collected",
    )
    pw = db_conns["password"]
    assert pw not in out.output
    assert not _grep_home(airflow_k8s, pw), "password leaked into the Airflow home (logs, rendered fields)"


def test_exit_78_fails_at_once_keeps_pod_and_no_credential_in_pod(
    cluster, namespace, airflow_k8s, dag_folder, db_conns
) -> None:
    path = _dag(
        dag_folder,
        "zt_full_78",
        retries=0,
        source_conn_id="zt_src",
        target_conn_id="zt_tgt",
        annotations={"sim.zdtp.io/exit-code": "78", "sim.zdtp.io/message": "spec: bad table name"},
    )
    out = run_dag(path, "zt_full_78", env={"ZT_NS": namespace})
    assert out.state("full") == "failed"
    assert "spec: bad table name" in out.output and "exit code 78" in out.output
    pods = cluster.core.list_namespaced_pod(namespace).items
    assert [p.status.phase for p in pods] == ["Failed"], "failed pod kept for debugging"
    pod = pods[0]
    assert db_conns["password"] not in json.dumps(cluster.api.sanitize_for_serialization(pod))
    secrets = cluster.core.list_namespaced_secret(namespace, label_selector="zdtp.io/part=credentials").items
    assert len(secrets) == 1
    (owner,) = secrets[0].metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == ("Pod", pod.metadata.name, pod.metadata.uid)
    assert db_conns["password"] not in out.output
    assert not _grep_home(airflow_k8s, db_conns["password"])


def test_unschedulable_pod_fails_after_schedule_timeout_and_is_deleted(
    cluster, namespace, airflow_k8s, dag_folder
) -> None:
    path = _dag(
        dag_folder,
        "zt_full_unsched",
        node_selector={"zdtp.io/no-such-node": "x"},
        schedule_timeout_seconds=3,
    )
    out = run_dag(path, "zt_full_unsched", env={"ZT_NS": namespace})
    assert out.state("full") == "failed"
    assert "never started" in out.output
    wait_for(lambda: not cluster.core.list_namespaced_pod(namespace).items, what="pending pod deleted")


def test_sigterm_fails_the_task_and_deletes_the_pod(cluster, namespace, airflow_k8s, dag_folder) -> None:
    """apache/airflow#73006: a SIGTERMed KPO task ends SUCCESS. Ours must end FAILED, pod gone."""
    path = _dag(
        dag_folder,
        "zt_full_term",
        annotations={"sim.zdtp.io/delay": "120s"},
        startup_check_interval_seconds=1,
    )
    proc = start_dag(path, "zt_full_term", env={"ZT_NS": namespace})
    try:
        wait_for(
            lambda: [
                p for p in cluster.core.list_namespaced_pod(namespace).items if p.status.phase == "Running"
            ],
            timeout=90,
            what="worker pod running",
        )
        # Past KPO's start-up wait, into the completion wait (see the report: a SIGTERM inside
        # KPO's await_pod_start was seen to hang).
        time.sleep(4)
        proc.send_signal(signal.SIGTERM)
        out = finish(proc, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out.state("full") == "failed", out.output[-3000:]
    assert "killed" in out.output
    wait_for(lambda: not cluster.core.list_namespaced_pod(namespace).items, what="pod deleted after SIGTERM")


def test_sigterm_while_the_pod_is_still_pending_ends_at_once(
    cluster, namespace, airflow_k8s, dag_folder
) -> None:
    """SIGTERM during KPO's start-up wait must not leave the task polling a deleted pod."""
    path = _dag(
        dag_folder,
        "zt_full_term_pending",
        node_selector={"zdtp.io/nowhere": "true"},
        schedule_timeout_seconds=600,
        startup_check_interval_seconds=1,
    )
    proc = start_dag(path, "zt_full_term_pending", env={"ZT_NS": namespace})
    try:
        wait_for(
            lambda: cluster.core.list_namespaced_pod(namespace).items, timeout=90, what="worker pod created"
        )
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        out = finish(proc, timeout=120)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out.state("full") == "failed", out.output[-3000:]
    assert took < 60, f"task needed {took:.0f}s to stop after SIGTERM"
    wait_for(lambda: not cluster.core.list_namespaced_pod(namespace).items, what="pod deleted after SIGTERM")


def test_full_sync_works_with_only_the_rbac_role(
    cluster, namespace, airflow_k8s, dag_folder, db_conns, tmp_path
) -> None:
    """KubernetesPodOperator's own calls (pod create/watch/patch/delete, events) plus zdtp's
    credentials Secret all fit inside deploy/rbac.yaml's Role."""
    from tests.integration.provider.test_security import _install_rbac, _sa_kubeconfig

    _install_rbac(cluster, namespace)
    kubeconfig = _sa_kubeconfig(cluster, namespace, tmp_path)
    path = _dag(
        dag_folder,
        "zt_full_rbac",
        kubernetes_conn_id="zt_sa",
        source_conn_id="zt_src",
        target_conn_id="zt_tgt",
        annotations={"sim.zdtp.io/message": json.dumps(RESULT), "sim.zdtp.io/delay": "1s"},
    )
    sa_conn = json.dumps({"conn_type": "kubernetes", "extra": {"kube_config_path": str(kubeconfig)}})
    out = run_dag(path, "zt_full_rbac", env={"ZT_NS": namespace, "AIRFLOW_CONN_ZT_SA": sa_conn})
    assert out.state("full") == "success", out.output[-3000:]
    assert out.xcom("full") == RESULT
