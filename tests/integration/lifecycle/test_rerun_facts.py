"""The re-run guard reads the real cluster and databases: a streaming task's Deployment, slot and
applied position refuse a copy as "running"; the same task stopped (scaled to 0) is refused as
"stopped" with the resume command; after teardown nothing is left and the copy may run."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.lifecycle.helpers import make_task_footprint
from tests.integration.provider._context import context
from zdtp_provider.hooks.connection import KubeConnection
from zdtp_provider.operators.incremental import StopIncrementalSyncOperator
from zdtp_provider.rerun_guard import read_facts, refusal
from zdtp_provider.teardown import teardown_task
from zdtp_provider.workload import deployment_name

pytestmark = [pytest.mark.cluster, pytest.mark.postgres, pytest.mark.airflow]


def test_guard_facts_running_stopped_then_torn_down(
    cluster, namespace, airflow_k8s, db_conns, source_dsn, target_dsn
) -> None:
    task = f"lc-rr-{uuid.uuid4().hex[:6]}"
    make_task_footprint(
        task=task, table="public.trr", source_dsn=source_dsn, target_dsn=target_dsn, namespace=namespace
    )
    hook = KubeConnection(conn_id="kubernetes_default").hook()

    def facts():
        return read_facts(
            task=task,
            namespace=namespace,
            deployment=deployment_name(task),
            hook=hook,
            source_dsn=source_dsn,
            target_dsn=target_dsn,
        )

    running = facts()
    assert running.replicas == 1 and running.created and running.slot_exists and not running.slot_active
    assert running.applied and running.applied["end_lsn"] == "0/2"
    found = refusal(running, task=task, dag_id="zdtp_x", source_file="/s/x.yaml")
    assert found is not None and found.running
    assert f"Deployment {namespace}/{deployment_name(task)} with 1 replica(s) since {running.created}" in (
        found.message
    )

    StopIncrementalSyncOperator(task_id="stop", task=task, namespace=namespace, poll_interval=0.5).execute(
        context()
    )
    stopped = facts()
    assert stopped.replicas == 0
    found = refusal(stopped, task=task, dag_id="zdtp_x", source_file="/s/x.yaml")
    assert found is not None and not found.running and "its stream exists but is stopped" in found.message
    assert f"scale deployment {deployment_name(task)} --replicas=1" in found.message

    teardown_task(
        hook=hook,
        task=task,
        namespace=namespace,
        source_dsn=source_dsn,
        target_dsn=target_dsn,
        target_tables=["public.trr"],
    )
    gone = facts()
    assert (gone.replicas, gone.slot_exists, gone.applied) == (None, False, None)
    assert refusal(gone, task=task, dag_id="zdtp_x", source_file="/s/x.yaml") is None
