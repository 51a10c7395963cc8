"""Names derived from a sync task: replication slot, publication and stream key.

Slots are cluster-wide and must match ``[a-z0-9_]{1,63}``; task names are DNS labels (``-``
allowed, up to 63 chars), so the prefix plus the task can overflow: then a short hash keeps the
name unique and stable.
"""

from __future__ import annotations

import hashlib

from zdtp_worker.contract.spec import WorkerSpec

_MAX = 63


def _derive(prefix: str, task: str) -> str:
    name = f"{prefix}{task.replace('-', '_')}"
    if len(name) <= _MAX:
        return name
    digest = hashlib.sha256(task.encode()).hexdigest()[:8]
    return f"{name[: _MAX - 9]}_{digest}"


def slot_name(spec: WorkerSpec) -> str:
    return spec.incremental.slot or _derive("zdtp_", spec.task)


def publication_name(spec: WorkerSpec) -> str:
    return spec.incremental.publication or _derive("zdtp_", spec.task)


def stream_key(spec: WorkerSpec) -> str:
    """Key of the stream's row in ``zdtp.cdc_state`` and of its lease: the slot name."""
    return slot_name(spec)


def task_stream_name(task: str) -> str:
    """The slot and publication name zdtp derives for ``task`` when the spec names none
    (teardown and maintenance use it to recognise a task's objects without a spec)."""
    return _derive("zdtp_", task)
