"""Kubernetes schedules the sync (``schedule_on: kubernetes``): the DAG manages a CronJob.

:class:`FullSyncCronJobOperator` with ``action``:

* ``apply``   — render the plan as one worker Job (the same builders as every other Job),
  wrap it in a CronJob (:mod:`zdtp_provider.k8s.cronjob`) and server-side apply it with its
  credentials Secret; the Secret is then owned by the CronJob (deleted with it);
* ``suspend`` / ``resume`` — set ``spec.suspend`` (a running Job is left to finish);
* ``delete``  — delete the CronJob in the foreground: its Jobs, pods and Secret go with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from zdtp_provider.hooks.kubernetes import APPLY_CONTENT_TYPE, FIELD_MANAGER
from zdtp_provider.k8s.cronjob import cron_job_name
from zdtp_provider.k8s.secret import OwnerRef
from zdtp_provider.operators._companions import adopt_companions, apply_companions
from zdtp_provider.operators._inputs import as_airflow_error
from zdtp_provider.operators.job import _FullSyncJobBase
from zdtp_provider.workload import WorkloadOptions, resolve_specs
from zdtp_provider.workload.batch import render_cronjob

ACTIONS = ("apply", "suspend", "resume", "delete")


class FullSyncCronJobOperator(_FullSyncJobBase):
    """Apply, suspend, resume or delete the CronJob of a sync task.

    :param action: one of ``apply``, ``suspend``, ``resume``, ``delete`` (templated).
    :param spec: the plan (a list of WorkerSpecs, or one), needed for ``apply``.
    :param schedule: cron expression; :param time_zone: its IANA time zone.
    :param starting_deadline_seconds: a run missed by more is skipped, not caught up.
    """

    template_fields: Sequence[str] = (*_FullSyncJobBase.template_fields, "action", "spec")

    def __init__(
        self,
        *,
        task: str,
        action: str = "apply",
        spec: Any = None,
        schedule: str | None = None,
        time_zone: str = "UTC",
        starting_deadline_seconds: int = 300,
        job_retries: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.task = task
        self.action = action
        self.spec = spec
        self.schedule = schedule
        self.time_zone = time_zone
        self.starting_deadline_seconds = starting_deadline_seconds
        self.job_retries = job_retries

    @property
    def cron_name(self) -> str:
        return cron_job_name(self.task)

    def execute(self, context: Context) -> dict[str, Any]:
        if self.action not in ACTIONS:
            raise AirflowException(f"action: one of {', '.join(ACTIONS)}, got {self.action!r}")
        namespace = self.resolved_namespace()
        api = self.hook.batch_v1_client
        if self.action == "delete":
            try:
                api.delete_namespaced_cron_job(self.cron_name, namespace, propagation_policy="Foreground")
            except Exception as exc:
                if getattr(exc, "status", None) != 404:
                    raise
            return {"cronjob": self.cron_name, "action": "delete"}
        if self.action in ("suspend", "resume"):
            body = {"spec": {"suspend": self.action == "suspend"}}
            api.patch_namespaced_cron_job(self.cron_name, namespace, body)
            return {"cronjob": self.cron_name, "action": self.action}
        return self._apply(context, namespace)

    def _apply(self, context: Context, namespace: str) -> dict[str, Any]:
        if not self.schedule:
            raise AirflowException("schedule: a CronJob needs a cron expression")
        with as_airflow_error():
            raw = self.spec if isinstance(self.spec, (list, tuple)) else [self.spec]
            specs = resolve_specs(list(raw), mode="full", run_id=context["run_id"])
            if not specs:
                raise AirflowSkipException("the plan is empty: no CronJob to apply")
            rendered = render_cronjob(
                WorkloadOptions.from_operator(self),
                specs,
                schedule=self.schedule,
                time_zone=self.time_zone,
                starting_deadline_seconds=self.starting_deadline_seconds,
                retries=self.job_retries,
                **self.render_context(context),
            )
        body = rendered.body()
        applied = apply_companions(self.hook, rendered.companions)
        cron = self.hook.batch_v1_client.patch_namespaced_cron_job(
            name=self.cron_name,
            namespace=namespace,
            body=body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY_CONTENT_TYPE,
        )
        owner = OwnerRef(api_version="batch/v1", kind="CronJob", name=self.cron_name, uid=cron.metadata.uid)
        adopt_companions(self.hook, applied, owner)
        self.log.info(
            "Applied CronJob %s/%s (%s %s)", namespace, self.cron_name, self.schedule, self.time_zone
        )
        applied_at = datetime.now(UTC).replace(microsecond=0).isoformat()
        return {
            "cronjob": self.cron_name,
            "action": "apply",
            "schedule": self.schedule,
            "applied_at": applied_at,
        }
