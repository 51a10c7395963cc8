"""Status readers, DSN building, spec coercion and API retry classification (no cluster)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowException
from kubernetes.client import (
    V1ContainerState,
    V1ContainerStateTerminated,
    V1ContainerStatus,
    V1Deployment,
    V1DeploymentCondition,
    V1DeploymentSpec,
    V1DeploymentStatus,
    V1Job,
    V1JobSpec,
    V1JobStatus,
    V1LabelSelector,
    V1ObjectMeta,
    V1Pod,
    V1PodStatus,
    V1PodTemplateSpec,
)
from kubernetes.client.exceptions import ApiException
from psycopg.conninfo import conninfo_to_dict

from zdtp_provider.connections import dsn_from_connection
from zdtp_provider.hooks import retry
from zdtp_provider.k8s.status import index_report, parse_index_set, rollout_status
from zdtp_provider.operators._inputs import as_airflow_error
from zdtp_provider.sensors.incremental import parse_lag_seconds
from zdtp_provider.workload import WorkloadError, resolve_spec


def _pod(index: int, code: int, message: str = "", *, at: int = 0) -> V1Pod:
    term = V1ContainerStateTerminated(exit_code=code, message=message or None)
    return V1Pod(
        metadata=V1ObjectMeta(
            name=f"p{index}-{code}",
            creation_timestamp=datetime(2024, 1, 1, 0, 0, at, tzinfo=UTC),
            annotations={"batch.kubernetes.io/job-completion-index": str(index)},
        ),
        status=V1PodStatus(
            container_statuses=[
                V1ContainerStatus(
                    name="worker",
                    image="i",
                    image_id="",
                    ready=False,
                    restart_count=0,
                    state=V1ContainerState(terminated=term),
                )
            ]
        ),
    )


def test_parse_index_set() -> None:
    assert parse_index_set("0-2,5,7-8") == {0, 1, 2, 5, 7, 8}
    assert parse_index_set(None) == set()


def test_index_report_per_index_outcomes() -> None:
    job = V1Job(
        metadata=V1ObjectMeta(name="j"),
        spec=V1JobSpec(completions=3, template=V1PodTemplateSpec()),
        status=V1JobStatus(completed_indexes="0-1", failed_indexes="2"),
    )
    result = json.dumps({"run_id": "r", "rows": 5})
    pods = [_pod(0, 0, result), _pod(1, 75, at=1), _pod(1, 0, result, at=2), _pod(2, 78, "bad config")]
    report = index_report(job, pods)
    assert report["succeeded"] == [0, 1] and report["failed"] == [2]
    assert report["indexes"]["1"]["exit_codes"] == [75, 0] and report["indexes"]["1"]["attempts"] == 2
    assert report["indexes"]["0"]["result"]["rows"] == 5
    assert report["indexes"]["2"] == {
        "status": "failed",
        "attempts": 1,
        "exit_codes": [78],
        "message": "bad config",
    }


def _dep(**status) -> V1Deployment:
    return V1Deployment(
        metadata=V1ObjectMeta(name="d", generation=2),
        spec=V1DeploymentSpec(replicas=1, selector=V1LabelSelector(), template=V1PodTemplateSpec()),
        status=V1DeploymentStatus(**status),
    )


def test_rollout_status() -> None:
    assert not rollout_status(_dep(observed_generation=1)).done
    assert not rollout_status(_dep(observed_generation=2, updated_replicas=1, replicas=2)).done
    assert rollout_status(
        _dep(observed_generation=2, updated_replicas=1, replicas=1, available_replicas=1)
    ).done
    failed = _dep(
        observed_generation=2,
        conditions=[
            V1DeploymentCondition(
                type="Progressing", status="False", reason="ProgressDeadlineExceeded", message="m"
            )
        ],
    )
    assert rollout_status(failed).failed


def test_dsn_from_connection_quotes_and_keeps_libpq_extras() -> None:
    conn = SimpleNamespace(
        conn_type="postgres",
        host="db",
        port=5432,
        login="u@x",
        password="p:w/d",
        schema="app",
        extra_dejson={"sslmode": "require", "cursor": "dict"},
    )
    assert conninfo_to_dict(dsn_from_connection(conn)) == {
        "host": "db",
        "port": "5432",
        "dbname": "app",
        "user": "u@x",
        "password": "p:w/d",
        "sslmode": "require",
    }


def test_resolve_spec_defaults_run_id_and_names_bad_fields() -> None:
    spec = resolve_spec({"task": "orders", "tables": [{"source": "a.b"}]}, mode="full", run_id="run-1")
    assert spec.run_id == "run-1" and spec.mode == "full"
    with pytest.raises(WorkloadError, match=r"^spec\.task"):
        resolve_spec({"task": "Bad_Task", "tables": [{"source": "a"}]}, mode="full", run_id="r")
    # Operators surface the build error unchanged, as an AirflowException.
    with pytest.raises(AirflowException, match=r"^spec\.task"), as_airflow_error():
        resolve_spec({"task": "Bad_Task", "tables": [{"source": "a"}]}, mode="full", run_id="r")
    with pytest.raises(WorkloadError, match=r"^spec\.mode"):
        resolve_spec(
            {"task": "t", "mode": "incremental", "tables": [{"source": "a"}]}, mode="full", run_id="r"
        )


def _api_exc(status: int, reason: str = "") -> ApiException:
    exc = ApiException(status=status, reason="x")
    exc.body = json.dumps({"reason": reason, "message": f"server says {reason}"})
    return exc


def test_retry_classification() -> None:
    assert retry.is_retryable(_api_exc(429))
    assert retry.is_retryable(_api_exc(503))
    assert retry.is_retryable(_api_exc(409, "Conflict"))
    assert not retry.is_retryable(_api_exc(409, "AlreadyExists"))
    assert not retry.is_retryable(_api_exc(403, "Forbidden"))


def test_api_call_retries_then_surfaces_server_message(monkeypatch) -> None:
    monkeypatch.setattr(retry, "WAIT_MIN", 0.001)
    monkeypatch.setattr(retry, "WAIT_MAX", 0.001)
    calls = []

    @retry.api_call("create Job")
    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise _api_exc(500, "InternalError")
        raise _api_exc(422, "Invalid")

    with pytest.raises(retry.ZdtpApiError, match="create Job: HTTP 422 Invalid: server says Invalid") as info:
        flaky()
    assert len(calls) == 3 and info.value.status == 422


def test_parse_lag_seconds() -> None:
    text = "# HELP x\nzdtp_cdc_lag_bytes 10\nzdtp_cdc_lag_seconds 1.5\n"
    assert parse_lag_seconds(text) == 1.5
    assert parse_lag_seconds("nothing") is None
