"""Teardown of one sync task on the real cluster and a real PostgreSQL: every object of that
task is gone afterwards (listed from the API and the catalogs), another task's are untouched,
objects zdtp did not create are kept, and a second teardown is a no-op."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest
from kubernetes import client

from tests.integration.lifecycle.helpers import catalog_names, make_task_footprint, run_sql, state_rows
from zdtp_provider.hooks.connection import KubeConnection
from zdtp_provider.teardown import MANAGED, kube_objects, teardown_task
from zdtp_worker.control.names import task_stream_name

pytestmark = [pytest.mark.cluster, pytest.mark.postgres, pytest.mark.airflow]


def _zdtp(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "zdtp_provider.cli", *args, "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_teardown_removes_one_task_and_only_it(
    cluster, namespace, airflow_k8s, db_conns, source_dsn, target_dsn
) -> None:
    a, b = f"lc-a-{uuid.uuid4().hex[:6]}", f"lc-b-{uuid.uuid4().hex[:6]}"
    for task, table in ((a, "public.ta"), (b, "public.tb")):
        make_task_footprint(
            task=task, table=table, source_dsn=source_dsn, target_dsn=target_dsn, namespace=namespace
        )
    # Not zdtp's: same task label but no managed-by label (e.g. the user's TLS Secret), and a
    # publication the user named outside zdtp's namespace.
    cluster.core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="user-tls", labels={"zdtp.io/task": a}), string_data={"x": "y"}
        ),
    )
    run_sql(source_dsn, "CREATE PUBLICATION user_pub FOR TABLE public.ta")
    hook = KubeConnection(conn_id="kubernetes_default").hook()
    before = kube_objects(hook, namespace=namespace)
    assert {o["kind"] for o in before if o["task"] == a} >= {"Deployment", "Secret", "Pod"}, before

    report = _zdtp(
        "teardown",
        a,
        "--namespace",
        namespace,
        "--source-dsn",
        source_dsn,
        "--target-dsn",
        target_dsn,
        "--kubeconfig",
        str(cluster.kubeconfig),
        "--table",
        "public.ta",
    )
    assert any(r.startswith("Deployment ") for r in report["removed"]), report
    assert f"slot {task_stream_name(a)}" in report["removed"]
    assert "zdtp.verify_log: 1 row(s)" in report["removed"], report

    after = kube_objects(hook, namespace=namespace)
    assert not [o for o in after if o["task"] == a], after
    assert {(o["kind"], o["name"]) for o in before if o["task"] == b} <= {
        (o["kind"], o["name"]) for o in after
    }
    assert cluster.core.read_namespaced_secret("user-tls", namespace).metadata.name == "user-tls"
    assert not cluster.apps.list_namespaced_deployment(
        namespace, label_selector=f"{MANAGED},zdtp.io/task={a}"
    ).items

    slots, pubs = catalog_names(source_dsn)
    assert task_stream_name(a) not in slots and task_stream_name(a) not in pubs
    assert task_stream_name(b) in slots and task_stream_name(b) in pubs
    assert "user_pub" in pubs
    assert set(state_rows(target_dsn, a, "public.ta").values()) == {0}
    assert set(state_rows(target_dsn, b, "public.tb").values()) == {1}

    # Idempotent: nothing left, nothing removed, no error.
    again = _zdtp(
        "teardown",
        a,
        "--namespace",
        namespace,
        "--source-dsn",
        source_dsn,
        "--target-dsn",
        target_dsn,
        "--kubeconfig",
        str(cluster.kubeconfig),
        "--table",
        "public.ta",
    )
    assert again["removed"] == [], again

    # A publication the sync names outside zdtp's namespace is kept, never dropped.
    kept = teardown_task(
        hook=None,
        task=b,
        namespace=namespace,
        source_dsn=source_dsn,
        target_dsn=None,
        publication="user_pub",
    )
    assert "publication user_pub" in kept["kept"]
    assert "user_pub" in catalog_names(source_dsn)[1]
