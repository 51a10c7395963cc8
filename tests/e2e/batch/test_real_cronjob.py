"""``schedule_on: kubernetes`` end to end on the real node: the DAG applies a ``*/1 * * * *``
CronJob, Kubernetes (not Airflow) starts a real scheduled sync whose pod copies the source, the
DAG's sensor reports that run; a ``suspend`` run of the DAG stops new Jobs; a ``delete`` run
leaves nothing behind (CronJob, Jobs, pods, credentials Secret)."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from devtools.real_node import RealNode
from tests.e2e.conftest import SyncEnv
from tests.e2e.real_node.test_airflow_on_real_node import _config
from tests.fixtures.cluster import Cluster
from tests.integration.worker_full.helpers import execute, fingerprint

pytestmark = [pytest.mark.realnode, pytest.mark.cluster, pytest.mark.airflow, pytest.mark.postgres]


def _wait(what: str, check, timeout: float = 240):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout  # a bound on the test, not a speed assertion
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(2)
    return value


def _control_cronjob(cluster: Cluster, namespace: str) -> str:
    """A ``*/1`` CronJob whose Jobs run no pod (parallelism 0): its Job marks a boundary passed."""
    name = "zt-control"
    pod = client.V1PodTemplateSpec(
        spec=client.V1PodSpec(
            restart_policy="Never", containers=[client.V1Container(name="c", image="control:none")]
        )
    )
    job = client.V1JobTemplateSpec(spec=client.V1JobSpec(parallelism=0, template=pod))
    cron = client.V1CronJob(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1CronJobSpec(schedule="*/1 * * * *", time_zone="UTC", job_template=job),
    )
    cluster.batch.create_namespaced_cron_job(namespace, cron)
    return name


def _jobs_of(cluster: Cluster, namespace: str, cronjob: str) -> list[str]:
    return [
        j.metadata.name
        for j in cluster.batch.list_namespaced_job(namespace).items
        if any(o.kind == "CronJob" and o.name == cronjob for o in j.metadata.owner_references or [])
    ]


def test_cronjob_runs_a_scheduled_sync_then_suspends_and_deletes(
    sync_env: SyncEnv,
    source_dsn: str,
    target_dsn: str,
    cluster: Cluster,
    node_namespace: str,
    real_node: RealNode,
) -> None:
    # Parsing competes with other tests for two cores: give the DAG file more than Airflow's 30 s.
    sync_env.env["AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT"] = "180"
    for name, rows in (("accounts", 20000), ("notes", 3000)):
        execute(source_dsn, f"CREATE TABLE {name} (id bigint PRIMARY KEY, v text)")
        execute(source_dsn, f"INSERT INTO {name} SELECT g, md5(g::text) FROM generate_series(1, {rows}) g")
    config = _config(
        "zt-cron",
        node_namespace,
        real_node,
        schedule="*/1 * * * *",
        schedule_on="kubernetes",
        time_zone="UTC",
    )
    config["tables"] = ["public.accounts", "public.notes"]
    dag_id = sync_env.write(config)

    # Three runs of the DAG (apply, suspend, delete): one Airflow process serves them all, its
    # start-up (imports, execution API) paid once instead of three times.
    with sync_env.one_airflow():
        applied = sync_env.dags_test(dag_id, conf={"cron_action": "apply"}, timeout=600)
        assert applied.state == "success", applied.output[-5000:]
        (cron,) = cluster.batch.list_namespaced_cron_job(node_namespace).items
        spec = cron.spec
        assert (spec.schedule, spec.concurrency_policy, spec.time_zone) == ("*/1 * * * *", "Forbid", "UTC")
        assert spec.starting_deadline_seconds == 300 and spec.successful_jobs_history_limit == 3
        assert cron.status.last_schedule_time is not None  # Kubernetes scheduled it, the sensor saw it end
        jobs = [j for j in cluster.batch.list_namespaced_job(node_namespace).items if j.status.succeeded]
        assert jobs and all(j.metadata.owner_references[0].kind == "CronJob" for j in jobs)
        for table in ("accounts", "notes"):
            assert fingerprint(source_dsn, table) == fingerprint(target_dsn, table)

        suspended = sync_env.dags_test(dag_id, conf={"cron_action": "suspend"}, timeout=300)
        assert suspended.state == "success", suspended.output[-3000:]
        assert cluster.batch.read_namespaced_cron_job(cron.metadata.name, node_namespace).spec.suspend
        # Let running Jobs end, then watch a full schedule boundary pass: no Job may start.
        _wait("running scheduled Jobs to end", lambda: not cluster.batch.read_namespaced_cron_job(
            cron.metadata.name, node_namespace).status.active)  # fmt: skip
        before = {j.metadata.name for j in cluster.batch.list_namespaced_job(node_namespace).items}
        # Proof that Kubernetes' CronJob controller passed a schedule boundary since the suspend:
        # a control CronJob, same schedule, not suspended, starts its Job (no pods) there. Waiting
        # for it replaces a blind sleep to the next minute plus 15 s slack.
        control = _control_cronjob(cluster, node_namespace)
        try:
            _wait(
                "the control CronJob's Job (a schedule boundary passed)",
                lambda: _jobs_of(cluster, node_namespace, control),
                120,
            )
            time.sleep(2)  # the controller handles both CronJobs at that boundary, in either order
            after = {j.metadata.name for j in cluster.batch.list_namespaced_job(node_namespace).items}
            started = after - before - set(_jobs_of(cluster, node_namespace, control))
        finally:
            cluster.batch.delete_namespaced_cron_job(control, node_namespace, propagation_policy="Background")
        assert not started, f"a suspended CronJob started {started}"

        deleted = sync_env.dags_test(dag_id, conf={"cron_action": "delete"}, timeout=300)
        assert deleted.state == "success", deleted.output[-3000:]

        def nothing_left() -> bool:
            return not (
                cluster.batch.list_namespaced_cron_job(node_namespace).items
                or cluster.batch.list_namespaced_job(node_namespace).items
                or cluster.core.list_namespaced_pod(node_namespace).items
                or cluster.core.list_namespaced_secret(
                    node_namespace, label_selector="app.kubernetes.io/managed-by=zdtp"
                ).items
            )

        _wait("the CronJob, its Jobs, pods and Secret to be gone", nothing_left)
