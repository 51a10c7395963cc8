"""state_event("stopped"): no pod listed is not enough while the controller has not acted on the
scale to 0 (a rollout in flight can still create its new ReplicaSet's pod after the list; seen in
the full suite as a stopped stream that got a pod back). The cluster-backed Stop cases are in
tests/integration/provider/test_defer_race.py and test_incremental.py; these pin the rule on the
objects the API returns (the hook's two reads are the only I/O, given here as data)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from kubernetes.client import V1Deployment, V1DeploymentStatus, V1ObjectMeta, V1Pod

from zdtp_provider.triggers.deployment import state_event

SELECTOR = {"zdtp.io/task": "orders"}


@dataclass
class _Reads:
    deployment: V1Deployment | None
    pods: list[V1Pod] = field(default_factory=list)

    def read_deployment(self, name: str, namespace: str) -> V1Deployment | None:
        return self.deployment

    def list_pods(self, namespace: str, selector: object) -> list[V1Pod]:
        return self.pods


def _dep(generation: int, observed: int | None, replicas: int | None) -> V1Deployment:
    status = V1DeploymentStatus(observed_generation=observed, replicas=replicas)
    return V1Deployment(metadata=V1ObjectMeta(name="d", generation=generation), status=status)


@pytest.mark.parametrize(
    ("dep", "pods", "stopped"),
    [
        (_dep(3, 2, 0), [], False),  # scale to 0 not seen by the controller yet
        (_dep(3, 3, 1), [], False),  # seen, a replica still counted (its pod not listed yet)
        (_dep(3, 3, 0), [V1Pod(metadata=V1ObjectMeta(name="p"))], False),  # a pod still ending
        (_dep(3, 3, 0), [], True),
        (_dep(3, 3, None), [], True),
    ],
)
def test_stopped_needs_the_controller_to_have_scaled_down(dep, pods, stopped) -> None:
    event = state_event(_Reads(dep, pods), "d", "ns", "stopped", SELECTOR, {})
    assert (event is not None and event["status"] == "success") is stopped, event


def test_stopped_without_a_deployment_is_an_error() -> None:
    event = state_event(_Reads(None), "d", "ns", "stopped", SELECTOR, {})
    assert event is not None and event["status"] == "error"
