"""CronJob manifests: a sync task scheduled by Kubernetes instead of Airflow.

Pure: wraps a rendered worker Job (same pod, same failure policy, same security context) into a
CronJob. ``concurrencyPolicy: Forbid`` (a copy never overlaps the previous one), a
``startingDeadlineSeconds`` (a run missed by more than that is skipped, not caught up), bounded
history, an explicit ``timeZone``. The worker's run id is the scheduled Job's own name
(``ZDTP_RUN_ID`` from the ``batch.kubernetes.io/job-name`` label): every scheduled run is a fresh
copy, while a pod retry inside one Job resumes it from its checkpoints.
"""

from __future__ import annotations

import copy
from typing import Any

from zdtp_provider.k8s.names import dns_label
from zdtp_provider.k8s.pod import CONTAINER_NAME
from zdtp_worker.contract.envelope import RUN_ID_ENV

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def cron_job_name(task: str) -> str:
    """≤52 characters: the controller appends ``-<minutes>`` to name each Job."""
    return dns_label("zdtp", task, "cron", max_length=52)


def cron_job(
    job: dict[str, Any],
    *,
    name: str,
    schedule: str,
    time_zone: str = "UTC",
    starting_deadline_seconds: int = 300,
    successful_history: int = 3,
    failed_history: int = 3,
    suspend: bool = False,
) -> dict[str, Any]:
    """The CronJob running ``job`` (a ``batch/v1`` Job manifest) on ``schedule``."""
    spec = copy.deepcopy(job["spec"])
    for container in spec["template"]["spec"]["containers"]:
        if container["name"] == CONTAINER_NAME:
            run_id = {
                "name": RUN_ID_ENV,
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{JOB_NAME_LABEL}']"}},
            }
            container["env"] = [run_id, *[e for e in container.get("env", []) if e["name"] != RUN_ID_ENV]]
    labels = dict(job["metadata"].get("labels", {}))
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": job["metadata"]["namespace"], "labels": labels},
        "spec": {
            "schedule": schedule,
            "timeZone": time_zone,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": starting_deadline_seconds,
            "successfulJobsHistoryLimit": successful_history,
            "failedJobsHistoryLimit": failed_history,
            "suspend": suspend,
            "jobTemplate": {"metadata": {"labels": labels}, "spec": spec},
        },
    }
