"""Security acceptance: least-privilege RBAC works and stops at the namespace; bad input creates
nothing and names the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from airflow.sdk.exceptions import AirflowException
from kubernetes import client, utils

from tests.conftest import REPO
from tests.fixtures.cluster import create_namespace
from tests.integration.provider._context import context
from zdtp_provider.hooks.retry import ZdtpApiError
from zdtp_provider.operators.incremental import IncrementalSyncOperator
from zdtp_provider.operators.job import FullSyncJobOperator, QueueFullSyncJobOperator

pytestmark = [pytest.mark.cluster, pytest.mark.airflow]

SPEC = {"task": "orders", "tables": [{"source": "public.orders"}]}


def _install_rbac(cluster, namespace: str) -> None:
    for doc in yaml.safe_load_all((REPO / "deploy" / "rbac.yaml").read_text()):
        doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects", []):
            subject["namespace"] = namespace
        utils.create_from_dict(cluster.api, doc, namespace=namespace)


def _sa_kubeconfig(cluster, namespace: str, tmp_path: Path) -> Path:
    token = cluster.core.create_namespaced_service_account_token(
        "zdtp-airflow",
        namespace,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
    ).status.token
    cfg = cluster.api.configuration
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "dev", "cluster": {"server": cfg.host, "certificate-authority": cfg.ssl_ca_cert}}
        ],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "dev", "user": "sa", "namespace": namespace}}],
        "current-context": "sa",
    }
    path = tmp_path / "sa-kubeconfig"
    path.write_text(json.dumps(kubeconfig))
    return path


def test_operators_work_with_rbac_role_and_get_403_elsewhere(
    cluster, namespace, airflow_k8s, db_conns, tmp_path, monkeypatch
) -> None:
    _install_rbac(cluster, namespace)
    kubeconfig = _sa_kubeconfig(cluster, namespace, tmp_path)
    monkeypatch.setenv(
        "AIRFLOW_CONN_ZT_SA",
        json.dumps({"conn_type": "kubernetes", "extra": {"kube_config_path": str(kubeconfig)}}),
    )
    creds = {"source_conn_id": "zt_src", "target_conn_id": "zt_tgt", "kubernetes_conn_id": "zt_sa"}

    inc = IncrementalSyncOperator(
        task_id="inc",
        namespace=namespace,
        spec=SPEC,
        image="zdtp/worker:1",
        deferrable=False,
        poll_interval=0.5,
        **creds,
    )
    assert inc.execute(context(task_id="inc"))["available_replicas"] == 1
    job = FullSyncJobOperator(
        task_id="job",
        namespace=namespace,
        spec=SPEC,
        image="zdtp/worker:1",
        deferrable=False,
        poll_interval=0.5,
        annotations={"sim.zdtp.io/delay": "1s"},
        **creds,
    )
    assert job.execute(context(task_id="job"))["phase"] == "succeeded"

    other = create_namespace(cluster)
    try:
        denied = IncrementalSyncOperator(
            task_id="inc", namespace=other, spec=SPEC, image="zdtp/worker:1", deferrable=False, **creds
        )
        with pytest.raises(ZdtpApiError) as info:
            denied.execute(context(task_id="inc"))
        assert info.value.status == 403
        assert "forbidden" in str(info.value).lower()
        assert not cluster.apps.list_namespaced_deployment(other).items
        assert not cluster.core.list_namespaced_secret(other, label_selector="zdtp.io/part").items
    finally:
        cluster.core.delete_namespace(other)


def _nothing_created(cluster, namespace: str) -> None:
    assert not cluster.core.list_namespaced_pod(namespace).items
    assert not cluster.batch.list_namespaced_job(namespace).items
    assert not cluster.apps.list_namespaced_deployment(namespace).items
    assert not cluster.core.list_namespaced_secret(namespace, label_selector="zdtp.io/part").items
    assert not cluster.core.list_namespaced_config_map(namespace, label_selector="zdtp.io/part").items


@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (
            lambda ns: FullSyncJobOperator(
                task_id="j", namespace=ns, image="i", spec=SPEC, labels={"bad key": "x"}
            ),
            "labels",
        ),
        (
            lambda ns: IncrementalSyncOperator(
                task_id="i", namespace=ns, image="i", spec=SPEC, name="n" * 64
            ),
            "name",
        ),
        (
            lambda ns: QueueFullSyncJobOperator(
                task_id="q", namespace=ns, image="i", spec=SPEC, work_queue="q", parallelism=-1
            ),
            "parallelism",
        ),
        (
            lambda ns: FullSyncJobOperator(
                task_id="j", namespace=ns, image="i", spec=SPEC, source_conn_id="zt_no_such_conn"
            ),
            "source_conn_id",
        ),
        (lambda ns: FullSyncJobOperator(task_id="j", namespace=ns, image="", spec=SPEC), "image"),
        (
            lambda ns: IncrementalSyncOperator(
                task_id="i", namespace=ns, image="i", spec={"task": "Bad_Task", "tables": [{"source": "a"}]}
            ),
            "spec.task",
        ),
    ],
    ids=[
        "labels",
        "name-too-long",
        "negative-parallelism",
        "unknown-connection",
        "missing-image",
        "bad-task",
    ],
)
def test_bad_input_names_the_field_and_creates_nothing(
    cluster, namespace, airflow_k8s, factory, field
) -> None:
    with pytest.raises(AirflowException, match=rf"^{field}\b"):
        factory(namespace).execute(context())
    _nothing_created(cluster, namespace)
