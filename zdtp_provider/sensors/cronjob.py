"""Reports what a sync task's CronJob did: its last schedule time and that run's outcome.

Succeeds once a Job the CronJob started has finished (with ``since``: a Job created at or after
that time, e.g. the apply), returning ``{"last_schedule_time", "job", "outcome"}``; a failed
scheduled run fails the sensor with the Job's condition message.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from airflow.sdk import Context
from airflow.sdk.bases.sensor import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from zdtp_provider.k8s.cronjob import cron_job_name
from zdtp_provider.k8s.status import job_failure_message, job_phase
from zdtp_provider.operators._kube_operator import ZdtpKubeOperator


class CronJobRunSensor(ZdtpKubeOperator, BaseSensorOperator):
    template_fields: Sequence[str] = (*ZdtpKubeOperator.template_fields, "since", "action")

    def __init__(self, *, task: str, since: str | None = None, action: str = "apply", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task = task
        self.since = since
        self.action = action

    def poke(self, context: Context) -> PokeReturnValue | bool:
        if self.action != "apply":
            raise AirflowSkipException(f"action {self.action}: no scheduled run to wait for")
        namespace, name = self.resolved_namespace(), cron_job_name(self.task)
        batch = self.hook.batch_v1_client
        cron = batch.read_namespaced_cron_job(name, namespace)
        since = datetime.fromisoformat(self.since) if self.since else None
        jobs = [
            j
            for j in batch.list_namespaced_job(namespace).items
            if any(o.kind == "CronJob" and o.name == name for o in j.metadata.owner_references or [])
            and (since is None or j.metadata.creation_timestamp >= since)
        ]
        finished = [j for j in jobs if job_phase(j) in ("succeeded", "failed")]
        if not finished:
            return False
        job = max(finished, key=lambda j: j.metadata.creation_timestamp)
        last = cron.status.last_schedule_time if cron.status else None
        report = {
            "cronjob": name,
            "last_schedule_time": last.isoformat() if last else None,
            "job": job.metadata.name,
            "outcome": job_phase(job),
        }
        if report["outcome"] == "failed":
            raise AirflowException(f"scheduled run {job.metadata.name} failed: {job_failure_message(job)}")
        return PokeReturnValue(is_done=True, xcom_value=report)
