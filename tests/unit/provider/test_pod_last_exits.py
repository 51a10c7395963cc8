"""A worker's past crash explains a failed rollout, but is not a health verdict on a pod that
runs again (it keeps ``lastState`` until its next restart)."""

from __future__ import annotations

from kubernetes.client import (
    V1ContainerState,
    V1ContainerStateRunning,
    V1ContainerStateTerminated,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodStatus,
)

from zdtp_provider.k8s.status import pod_last_exits, pod_waiting_reasons


def _pod(state: V1ContainerState) -> V1Pod:
    last = V1ContainerState(
        terminated=V1ContainerStateTerminated(exit_code=75, message='{"error": "source: connection refused"}')
    )
    status = V1ContainerStatus(
        name="worker", image="i", image_id="", ready=False, restart_count=1, state=state, last_state=last
    )
    return V1Pod(metadata=V1ObjectMeta(name="w"), status=V1PodStatus(container_statuses=[status]))


def test_running_again_after_a_crash_is_not_a_waiting_reason_but_its_exit_is_known() -> None:
    pod = _pod(V1ContainerState(running=V1ContainerStateRunning()))
    assert pod_waiting_reasons([pod]) == []
    assert pod_last_exits([pod]) == ['w: last exit 75: {"error": "source: connection refused"}']


def test_crash_loop_backoff_is_a_waiting_reason() -> None:
    pod = _pod(V1ContainerState(waiting=V1ContainerStateWaiting(reason="CrashLoopBackOff")))
    assert pod_waiting_reasons([pod]) == ["w: CrashLoopBackOff"]
