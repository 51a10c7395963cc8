"""Teardown of one sync task, and the search for leftovers of sync tasks that no longer exist.

One task's objects, in the order they are removed (so nothing reads what is dropped next):

1. Kubernetes: the Deployments, Jobs, Pods, Secrets and ConfigMaps labelled
   ``app.kubernetes.io/managed-by=zdtp`` *and* ``zdtp.io/task=<task>`` in the task's namespace:
   objects zdtp did not create (a user's TLS Secret, anything without those labels) never match;
2. the source: the task's ``zdtp_*`` slot and publication (:mod:`zdtp_worker.control.teardown`);
3. the target: the task's rows in the ``zdtp`` state tables (``cdc_state``, ``work_queue``,
   ``verify_log``, and the full-copy rows of its target tables).

Every step is idempotent: a second teardown finds nothing and reports nothing removed. The
operator (:mod:`zdtp_provider.operators.teardown`), ``zdtp teardown`` and the maintenance DAG
all call :func:`teardown_task`; :func:`find_leftovers` is what the maintenance DAG reports.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from zdtp_provider.hooks.kubernetes import ZdtpKubernetesHook
from zdtp_provider.k8s.labels import MANAGED_BY, TASK
from zdtp_provider.k8s.names import label_value
from zdtp_worker.control import teardown as db
from zdtp_worker.control.names import task_stream_name

# Deleted in this order: owners before what they own, so a controller cannot recreate a pod.
KINDS = ("Deployment", "Job", "Pod", "Secret", "ConfigMap")
MANAGED = f"app.kubernetes.io/managed-by={MANAGED_BY}"


def _lister(hook: ZdtpKubernetesHook, kind: str):
    return {
        "Deployment": hook.apps_v1_client.list_namespaced_deployment,
        "Job": hook.batch_v1_client.list_namespaced_job,
        "Pod": hook.core_v1_client.list_namespaced_pod,
        "Secret": hook.core_v1_client.list_namespaced_secret,
        "ConfigMap": hook.core_v1_client.list_namespaced_config_map,
    }[kind]


def task_selector(task: str) -> str:
    return f"{MANAGED},{TASK}={label_value(task)}"


def kube_objects(
    hook: ZdtpKubernetesHook, *, namespace: str, selector: str = MANAGED
) -> list[dict[str, str]]:
    """zdtp's objects in ``namespace`` matching ``selector``: kind, name and task label."""
    out = []
    for kind in KINDS:
        for item in _lister(hook, kind)(namespace, label_selector=selector).items:
            labels = item.metadata.labels or {}
            out.append({"kind": kind, "name": item.metadata.name, "task": labels.get(TASK, "")})
    return out


def delete_kube_objects(
    hook: ZdtpKubernetesHook, *, namespace: str, task: str, timeout: float = 120, poll: float = 1.0
) -> list[str]:
    """Delete the task's objects and wait until none is left (pods included); names removed."""
    selector = task_selector(task)
    removed = []
    for obj in kube_objects(hook, namespace=namespace, selector=selector):
        if hook.delete(kind=obj["kind"], name=obj["name"], namespace=namespace, propagation="Background"):
            removed.append(f"{obj['kind']} {namespace}/{obj['name']}")
    deadline = time.monotonic() + timeout
    while left := kube_objects(hook, namespace=namespace, selector=selector):
        if time.monotonic() > deadline:
            names = ", ".join(f"{o['kind']} {o['name']}" for o in left)
            raise TimeoutError(f"teardown of {task}: still present after {timeout}s: {names}")
        time.sleep(poll)
    return removed


def teardown_task(
    *,
    hook: ZdtpKubernetesHook | None,
    task: str,
    namespace: str,
    source_dsn: str | None,
    target_dsn: str | None,
    target_tables: Iterable[str] = (),
    slot: str | None = None,
    publication: str | None = None,
    timeout: float = 120,
) -> dict[str, Any]:
    """Remove everything of ``task``; a report of what was removed and what was kept (not zdtp's).

    ``slot``/``publication`` default to the names zdtp derives from the task. A part whose
    handle is ``None`` (no cluster, no DSN) is skipped and listed under ``skipped``.
    """
    slot = slot or task_stream_name(task)
    publication = publication or task_stream_name(task)
    report: dict[str, Any] = {"task": task, "namespace": namespace, "removed": [], "kept": [], "skipped": []}
    if hook is not None:
        report["removed"] += delete_kube_objects(hook, namespace=namespace, task=task, timeout=timeout)
    else:
        report["skipped"].append("kubernetes objects (no cluster connection)")
    if source_dsn:
        part = db.drop_source_objects(source_dsn, slot=slot, publication=publication)
        report["removed"] += part.removed
        report["kept"] += part.kept
    else:
        report["skipped"].append("slot and publication (no source)")
    if target_dsn:
        tables = list(target_tables)
        part = db.delete_target_state(target_dsn, task=task, stream=slot, target_tables=tables)
        report["removed"] += part.removed
        if not tables:
            report["skipped"].append("full-copy state rows (target tables unknown)")
    else:
        report["skipped"].append("target state rows (no target)")
    return report


def find_leftovers(
    *,
    known_tasks: Collection[str],
    hook: ZdtpKubernetesHook | None = None,
    namespaces: Iterable[str] = (),
    source_dsns: Mapping[str, str] | None = None,
    target_dsns: Mapping[str, str] | None = None,
) -> list[dict[str, str]]:
    """zdtp objects that belong to no task in ``known_tasks``: one dict per object (kind, name,
    ``where``: the namespace or the connection label the DSN was given under, and ``task`` when
    the object names it)."""
    labels = {label_value(t) for t in known_tasks}
    streams = {task_stream_name(t) for t in known_tasks}
    out: list[dict[str, str]] = []
    for ns in namespaces if hook is not None else ():
        for obj in kube_objects(hook, namespace=ns):  # type: ignore[arg-type]
            if obj["task"] not in labels:
                out.append({**obj, "where": ns})
    for where, dsn in (source_dsns or {}).items():
        for kind, names in db.source_objects(dsn).items():
            out += [{"kind": kind, "name": n, "task": "", "where": where} for n in names if n not in streams]
    for where, dsn in (target_dsns or {}).items():
        found = db.target_streams(dsn)
        for name in found["stream"]:
            if name not in streams:
                out.append({"kind": "cdc_state", "name": name, "task": "", "where": where})
        for task in found["queue_task"]:
            if task not in known_tasks:
                out.append({"kind": "work_queue", "name": task, "task": task, "where": where})
        for task in found.get("verify_task", []):
            if task not in known_tasks:
                out.append({"kind": "verify_log", "name": task, "task": task, "where": where})
    return out


def remove_leftover(
    obj: Mapping[str, str], *, hook: ZdtpKubernetesHook | None, dsns: Mapping[str, str]
) -> list[str]:
    """Remove one object :func:`find_leftovers` reported (``dsns``: its labels to DSNs)."""
    kind, name, where = obj["kind"], obj["name"], obj["where"]
    if kind in KINDS:
        if hook is None:
            return []
        return delete_kube_objects(hook, namespace=where, task=obj["task"]) if obj["task"] else []
    dsn = dsns[where]
    if kind == "slot":
        return db.drop_source_objects(dsn, slot=name, publication="").removed
    if kind == "publication":
        return db.drop_source_objects(dsn, slot="", publication=name).removed
    if kind == "cdc_state":
        return db.delete_target_state(dsn, task=None, stream=name).removed
    if kind in ("work_queue", "verify_log"):  # both keyed by the task's name
        return db.delete_target_state(dsn, task=name, stream=None).removed
    raise ValueError(f"unknown leftover kind {kind!r}")
