"""The task's extra link to the Kubernetes object its worker runs in (Pod, Job or Deployment).

There is no one URL for "this object" in every cluster, so the link is a template the
deployment sets once: Airflow config ``[zdtp] worker_link_template`` (env
``AIRFLOW__ZDTP__WORKER_LINK_TEMPLATE``) with the placeholders ``{kind}`` (``Job``),
``{resource}`` (``jobs``), ``{namespace}`` and ``{name}`` — e.g. a Headlamp install:
``https://headlamp.example/c/main/{resource}/{namespace}/{name}``. Unset: no link is shown.

Airflow 3 computes the link on the worker when the task ends (from the operator that ran, so
the object it created or re-attached to) and stores it as an XCom for the UI.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

RESOURCES = {"Pod": "pods", "Job": "jobs", "Deployment": "deployments"}
TEMPLATE_OPTION = ("zdtp", "worker_link_template")


def worker_url(template: str, *, kind: str, namespace: str, name: str) -> str:
    """The template filled for one object ('' when no template is set)."""
    if not template:
        return ""
    return template.format(kind=kind, resource=RESOURCES[kind], namespace=namespace, name=name)


class WorkerObjectLink(BaseOperatorLink):
    """``Worker on Kubernetes``: the Pod/Job/Deployment of the task's worker."""

    name = "Worker on Kubernetes"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.configuration import conf

        ref = getattr(operator, "worker_object", lambda: None)()
        if ref is None:
            return ""
        kind, namespace, name = ref
        template = conf.get(*TEMPLATE_OPTION, fallback="")
        return worker_url(template, kind=kind, namespace=namespace, name=name)
