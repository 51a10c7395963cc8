"""The labels every zdtp object carries (DESIGN.md: app.kubernetes.io/* plus zdtp.io/*).

Two sets matter: *identity* labels, stable for the life of a sync task's worker (used as a
Deployment's immutable selector and to find objects again on retry), and *run* labels, which add
the Airflow run so a retry can find the Job its first try made without adopting another run's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from zdtp_provider.k8s.names import label_value, validate_labels

Component = Literal["full-sync", "incremental-sync"]

APP_NAME = "zdtp-worker"
MANAGED_BY = "zdtp"
TASK = "zdtp.io/task"
WORKER = "zdtp.io/worker"
RUN = "zdtp.io/run"
# Hash of the Airflow task instance (dag, task, map index): separates two DAGs syncing one task.
OWNER = "zdtp.io/owner"
# Objects that only exist to feed a workload (credentials Secret, spec ConfigMap).
PART = "zdtp.io/part"


def identity_labels(*, task: str, worker: str, component: Component) -> dict[str, str]:
    """Labels that never change for one worker of one sync task (safe as a selector)."""
    return {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/instance": label_value(task),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        TASK: label_value(task),
        WORKER: label_value(worker),
    }


def selector_labels(*, task: str, worker: str) -> dict[str, str]:
    """The minimal immutable selector of a Deployment's pods."""
    return {"app.kubernetes.io/name": APP_NAME, TASK: label_value(task), WORKER: label_value(worker)}


def worker_labels(
    *,
    task: str,
    worker: str,
    component: Component,
    run_id: str | None = None,
    owner: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """All labels of a worker object; user ``extra`` labels may not override zdtp's own."""
    labels = validate_labels(dict(extra or {}), field="labels")
    labels.update(identity_labels(task=task, worker=worker, component=component))
    if run_id:
        labels[RUN] = label_value(run_id)
    if owner:
        labels[OWNER] = label_value(owner)
    return labels


def selector_string(labels: Mapping[str, str]) -> str:
    """``key=value,...`` label selector, sorted so it is stable in logs and tests."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
