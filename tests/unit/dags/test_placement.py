"""Placement options from a sync-task config reach every workload kind's pod spec."""

from __future__ import annotations

from zdtp_provider.k8s import job as jobs
from zdtp_provider.k8s.pod import SpecSource, WorkerContainer, build_pod_spec
from zdtp_provider.workload.pod_parts import placement_kwargs


def _cfg() -> WorkerContainer:
    return WorkerContainer(image="img", args=["full"], spec=SpecSource(inline_json="{}"))


def test_placement_kwargs_build_tolerations_and_host_network() -> None:
    kwargs = placement_kwargs(
        service_account_name="sa",
        node_selector={"zdtp.io/real-node": "true"},
        tolerations=[{"key": "zdtp.io/real-node", "operator": "Exists", "effect": "NoSchedule"}],
        host_network=True,
    )
    spec = build_pod_spec(_cfg(), restart_policy="Never", **kwargs)
    assert spec.host_network is True
    assert spec.node_selector == {"zdtp.io/real-node": "true"}
    assert [(t.key, t.operator, t.effect) for t in spec.tolerations] == [
        ("zdtp.io/real-node", "Exists", "NoSchedule")
    ]
    assert spec.service_account_name == "sa"


def test_default_pod_spec_stays_off_the_host_network() -> None:
    kwargs = placement_kwargs(
        service_account_name=None, node_selector=None, tolerations=None, host_network=False
    )
    job = jobs.indexed_job(
        _cfg(), name="j", namespace="ns", labels={"a": "b"}, completions=2, parallelism=1, pod_kwargs=kwargs
    )
    assert job.spec.template.spec.host_network is None
    assert job.spec.template.spec.tolerations is None
