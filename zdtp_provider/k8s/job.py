"""Job manifests for the batch patterns: one Job per worker, Indexed Job, and work queues.

All share a ``podFailurePolicy`` derived from the worker's exit codes (zdtp_worker.contract.errors):
65/78 (data or config error) fail at once, since a retry would fail the same way; 75 (temporary)
counts toward the retry budget; pods killed by a disruption (preemption, node drain) are ignored
and simply replaced. ``restartPolicy: Never`` is required by that policy, and it also keeps each
attempt's termination message in its own pod for the report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes.client import (
    V1Job,
    V1JobSpec,
    V1ObjectMeta,
    V1PodFailurePolicy,
    V1PodFailurePolicyOnExitCodesRequirement,
    V1PodFailurePolicyOnPodConditionsPattern,
    V1PodFailurePolicyRule,
    V1PodTemplateSpec,
)

from zdtp_provider.k8s.pod import CONTAINER_NAME, WorkerContainer, build_pod_spec
from zdtp_worker.contract.errors import FATAL_EXIT_CODES, ExitCode

RETRYABLE_EXIT_CODES = [int(ExitCode.TEMPFAIL)]


def pod_failure_policy(*, per_index: bool) -> V1PodFailurePolicy:
    """Exit-code rules; ``per_index`` fails only the index (Indexed + backoffLimitPerIndex)."""
    return V1PodFailurePolicy(
        rules=[
            V1PodFailurePolicyRule(
                action="Ignore",
                on_pod_conditions=[V1PodFailurePolicyOnPodConditionsPattern(type="DisruptionTarget")],
            ),
            V1PodFailurePolicyRule(
                action="FailIndex" if per_index else "FailJob",
                on_exit_codes=V1PodFailurePolicyOnExitCodesRequirement(
                    container_name=CONTAINER_NAME, operator="In", values=sorted(FATAL_EXIT_CODES)
                ),
            ),
            V1PodFailurePolicyRule(
                action="Count",
                on_exit_codes=V1PodFailurePolicyOnExitCodesRequirement(
                    container_name=CONTAINER_NAME, operator="In", values=RETRYABLE_EXIT_CODES
                ),
            ),
        ]
    )


def _job(
    cfg: WorkerContainer,
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    spec: dict,
    pod_annotations: Mapping[str, str] | None = None,
    active_deadline_seconds: int | None = None,
    pod_kwargs: Mapping | None = None,
) -> V1Job:
    """The Job around a worker pod; ``common`` of the builders below lands here (name,
    namespace, labels, pod annotations, deadline, pod-spec kwargs)."""
    template = V1PodTemplateSpec(
        metadata=V1ObjectMeta(labels=dict(labels), annotations=dict(pod_annotations or {}) or None),
        spec=build_pod_spec(cfg, restart_policy="Never", **dict(pod_kwargs or {})),
    )
    return V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=V1ObjectMeta(name=name, namespace=namespace, labels=dict(labels)),
        spec=V1JobSpec(template=template, active_deadline_seconds=active_deadline_seconds, **spec),
    )


def worker_job(cfg: WorkerContainer, *, retries: int = 0, **common: Any) -> V1Job:
    """Pattern (a), "template expansion": one Job runs one worker once (plus ``retries``)."""
    _non_negative(retries=retries)
    spec = dict(
        completions=1,
        parallelism=1,
        backoff_limit=retries,
        pod_failure_policy=pod_failure_policy(per_index=False),
    )
    return _job(cfg, spec=spec, **common)


def indexed_job(
    cfg: WorkerContainer,
    *,
    completions: int,
    parallelism: int,
    retries_per_index: int = 1,
    max_failed_indexes: int | None = None,
    **common: Any,
) -> V1Job:
    """Pattern (b): one Indexed Job, index *i* runs worker *i*; retries are counted per index so
    one flaky chunk cannot spend the budget of the others."""
    _positive(completions=completions, parallelism=parallelism)
    _non_negative(retries_per_index=retries_per_index)
    if max_failed_indexes is not None:
        _non_negative(max_failed_indexes=max_failed_indexes)
    spec = dict(
        completions=completions,
        parallelism=min(parallelism, completions),
        completion_mode="Indexed",
        backoff_limit_per_index=retries_per_index,
        max_failed_indexes=max_failed_indexes,
        pod_failure_policy=pod_failure_policy(per_index=True),
    )
    return _job(cfg, spec=spec, **common)


def queue_job(
    cfg: WorkerContainer, *, parallelism: int, items: int | None = None, retries: int = 3, **common: Any
) -> V1Job:
    """Patterns (c) and (d): workers pull from a work queue.

    With ``items`` (c), each pod takes exactly one item and the Job needs ``items`` successes.
    Without it (d), ``completions`` is unset: pods drain the queue and the Job is complete once
    any pod has succeeded and all have stopped — the worker exits 0 only when the queue is empty.
    """
    _positive(parallelism=parallelism)
    _non_negative(retries=retries)
    if items is not None:
        _positive(items=items)
    spec = dict(
        completions=items,
        parallelism=min(parallelism, items) if items is not None else parallelism,
        backoff_limit=retries,
        pod_failure_policy=pod_failure_policy(per_index=False),
    )
    return _job(cfg, spec=spec, **common)


def _positive(**values: int) -> None:
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key}: must be a positive integer, got {value!r}")


def _non_negative(**values: int) -> None:
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{key}: must be a non-negative integer, got {value!r}")
