"""KPO pod arguments on every zdtp operator: honoured in the Pod, Job and Deployment, old names
warn, arguments zdtp cannot honour raise at construction naming themselves."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowException

from tests.unit.provider.kpo_args import assert_honoured, kpo_arguments
from zdtp_provider.operators.full import FullSyncOperator
from zdtp_provider.operators.incremental import IncrementalSyncOperator
from zdtp_provider.operators.job import (
    FullSyncJobOperator,
    IndexedFullSyncJobOperator,
    QueueFullSyncJobOperator,
)

SPEC = {"task": "orders", "tables": [{"source": "public.orders"}]}
NS = "zdtp-test"
PC, SA = "zdtp-test-priority", "zdtp-test-sa"


def _context() -> dict:
    ti = SimpleNamespace(dag_id="d", task_id="t", map_index=-1, try_number=1)
    return {"run_id": "r1", "ti": ti, "dag": SimpleNamespace(), "task_state_store": None}


def _pod_spec(op) -> tuple[dict, dict]:
    """(metadata, spec) of the worker pod the operator would create, via its execute path."""
    if isinstance(op, FullSyncOperator):
        from zdtp_provider.k8s import manifest

        pod = manifest(op.build_pod_request_obj(_context()))
        return pod["metadata"], pod["spec"]
    body = op.render(_context()).body() if not isinstance(op, IncrementalSyncOperator) else op.render().body()
    template = body["spec"]["template"]
    return template["metadata"], template["spec"]


OPERATORS = {
    "pod": lambda kw: FullSyncOperator(task_id="t", namespace=NS, image="i", spec=SPEC, **kw),
    "job": lambda kw: FullSyncJobOperator(task_id="t", namespace=NS, image="i", spec=SPEC, **kw),
    "indexed": lambda kw: IndexedFullSyncJobOperator(
        task_id="t", namespace=NS, image="i", specs=[SPEC, {**SPEC, "worker": "w1"}], **kw
    ),
    "queue": lambda kw: QueueFullSyncJobOperator(
        task_id="t", namespace=NS, image="i", spec=SPEC, work_queue="q", **kw
    ),
    "deployment": lambda kw: IncrementalSyncOperator(
        task_id="t", namespace=NS, image="i", spec={**SPEC, "mode": "incremental"}, **kw
    ),
}


@pytest.mark.parametrize("kind", OPERATORS)
def test_every_operator_honours_kpo_pod_arguments(kind: str, tmp_path: Path) -> None:
    op = OPERATORS[kind](kpo_arguments(tmp_path, priority_class=PC, service_account=SA))
    meta, spec = _pod_spec(op)
    assert_honoured(meta, spec, priority_class=PC, service_account=SA)


@pytest.mark.parametrize("kind", OPERATORS)
@pytest.mark.parametrize(
    "argument", [{"cmds": ["sh"]}, {"security_context": {"runAsUser": 0}}, {"secrets": ["x"]}]
)
def test_unsupported_kpo_argument_raises_at_construction_naming_it(kind: str, argument: dict) -> None:
    (name,) = argument
    with pytest.raises(AirflowException, match=rf"^{name}: "):
        OPERATORS[kind](argument)


@pytest.mark.parametrize("kind", OPERATORS)
def test_old_names_are_deprecated_aliases(kind: str) -> None:
    resources = {"limits": {"memory": "2Gi"}}
    with pytest.warns(DeprecationWarning, match="worker_resources"):
        op = OPERATORS[kind]({"worker_resources": resources, "host_network": True})
    _, spec = _pod_spec(op)
    (worker,) = spec["containers"]
    assert worker["resources"] == {"limits": {"memory": "2Gi"}}
    assert spec["hostNetwork"] is True


@pytest.mark.parametrize("kind", [k for k in OPERATORS if k != "pod"])
def test_deferrable_defaults_to_airflow_config(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")
    assert OPERATORS[kind]({}).deferrable is False
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    assert OPERATORS[kind]({}).deferrable is True


@pytest.mark.parametrize(
    "cls", [FullSyncOperator, FullSyncJobOperator, QueueFullSyncJobOperator, IncrementalSyncOperator]
)
def test_partial_accepts_kpo_arguments_and_aliases(cls) -> None:
    """Airflow checks .partial() arguments against the __init__ signatures: they must be explicit."""
    import pendulum
    from airflow.sdk import DAG

    extra = {"work_queue": "q"} if cls is QueueFullSyncJobOperator else {}
    with DAG("d", schedule=None, start_date=pendulum.datetime(2024, 1, 1)):
        mapped = cls.partial(
            task_id="t",
            image="i",
            namespace=NS,
            container_resources={"limits": {"memory": "1Gi"}},
            affinity={},
            image_pull_secrets="regcred",
            **extra,
        ).expand(spec=[SPEC])
        with pytest.warns(DeprecationWarning):
            old = cls.partial(task_id="o", image="i", worker_resources={"limits": {"memory": "2Gi"}}, **extra)
            old = old.expand(spec=[SPEC]).unmap({"spec": SPEC})
    op = mapped.unmap({"spec": SPEC})
    assert op.container_resources == {"limits": {"memory": "1Gi"}}
    assert old.container_resources == {"limits": {"memory": "2Gi"}}
