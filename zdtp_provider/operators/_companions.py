"""Create a workload's companion Secret/ConfigMap, then hand them to the workload as owner.

Order matters: companions first (so the pod never starts without its credentials), workload
second, owner reference last (so Kubernetes garbage-collects them with the workload). If the
workload cannot be created, the companions are deleted again: a failed task leaves nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from zdtp_provider.hooks.kubernetes import ZdtpKubernetesHook
from zdtp_provider.k8s import manifest
from zdtp_provider.k8s.secret import OwnerRef


def apply_companions(hook: ZdtpKubernetesHook, companions: Sequence[Any]) -> list[dict]:
    applied = []
    try:
        for obj in companions:
            body = manifest(obj)
            hook.apply(body)
            applied.append(body)
    except Exception:
        delete_companions(hook, applied)
        raise
    return applied


def adopt_companions(hook: ZdtpKubernetesHook, companions: Sequence[dict], owner: OwnerRef) -> None:
    refs = [manifest(owner.to_model())]
    for body in companions:
        meta = body["metadata"]
        hook.set_owner(
            kind=body["kind"], name=meta["name"], namespace=meta["namespace"], owner_references=refs
        )


def delete_companions(hook: ZdtpKubernetesHook, companions: Sequence[dict]) -> None:
    for body in companions:
        meta = body["metadata"]
        with contextlib.suppress(Exception):
            hook.delete(
                kind=body["kind"], name=meta["name"], namespace=meta["namespace"], propagation="Background"
            )
