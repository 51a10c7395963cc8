"""Leftovers of sync tasks whose file is gone: find them, report them, remove them when told.

A task "exists" while a file in the sync folder declares its name, valid or not: a duplicate
name still owns its objects. A file that does not parse at all hides which task it declares, so
then nothing is removed (report only) until the folder is clean: a typo must never make a running
stream look abandoned.

Where to look: the namespaces and connections of the remaining sync tasks, plus any the caller
adds (a deleted task may have used others). Matching is by zdtp's own names and labels only
(:func:`zdtp_provider.teardown.find_leftovers`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from zdtp_provider.hooks.kubernetes import ZdtpKubernetesHook
from zdtp_provider.sync_files import load_folder, sync_file_paths
from zdtp_provider.teardown import find_leftovers, remove_leftover


def declared_tasks(folder: Path) -> tuple[set[str], list[str]]:
    """(task names the folder's files declare, files whose task name cannot be read)."""
    found = load_folder(folder)
    names = {c.name for c in found.valid.values()}
    unreadable = []
    for path in sync_file_paths(folder):
        if path in found.valid:
            continue
        try:
            name = (yaml.safe_load(path.read_text()) or {}).get("name")
        except Exception:
            name = None
        if isinstance(name, str) and name:
            names.add(name)
        else:
            unreadable.append(str(path))
    return names, unreadable


def scope(folder: Path) -> dict[str, list[str]]:
    """Namespaces and connection ids the folder's valid sync tasks use."""
    configs = load_folder(folder).valid.values()
    return {
        "namespaces": sorted({c.namespace for c in configs}),
        "source_conn_ids": sorted({c.source_conn_id for c in configs}),
        "target_conn_ids": sorted({c.target_conn_id for c in configs}),
    }


def maintain(
    folder: Path,
    *,
    hook: ZdtpKubernetesHook | None,
    dsn: Callable[[str], str],
    namespaces: Iterable[str] = (),
    source_conn_ids: Iterable[str] = (),
    target_conn_ids: Iterable[str] = (),
    remove: bool = False,
) -> dict[str, Any]:
    """Report (and with ``remove``, remove) zdtp objects of tasks no file declares."""
    known, unreadable = declared_tasks(folder)
    where = scope(folder)
    sources = {f"source {c}": dsn(c) for c in sorted({*where["source_conn_ids"], *source_conn_ids})}
    targets = {f"target {c}": dsn(c) for c in sorted({*where["target_conn_ids"], *target_conn_ids})}
    leftovers = find_leftovers(
        known_tasks=known,
        hook=hook,
        namespaces=sorted({*where["namespaces"], *namespaces}),
        source_dsns=sources,
        target_dsns=targets,
    )
    report: dict[str, Any] = {"known_tasks": sorted(known), "leftovers": leftovers, "removed": []}
    if unreadable:
        report["refused"] = f"not removing anything: cannot read the task name of {', '.join(unreadable)}"
    elif remove:
        done: set[tuple[str, str]] = set()
        for obj in leftovers:
            # Kubernetes leftovers of one task go together (one labelled teardown per namespace).
            key = (obj["where"], obj["task"]) if obj["task"] and obj["kind"][0].isupper() else None
            if key in done:
                continue
            report["removed"] += remove_leftover(obj, hook=hook, dsns={**sources, **targets})
            if key:
                done.add(key)
    return report


def teardown_declared(
    folder: Path, tasks: Iterable[str], *, hook_for: Callable[[str], Any], dsn: Callable[[str], str]
) -> list[dict[str, Any]]:
    """Teardown of sync tasks whose file is still in ``folder`` (from the UI: the maintenance
    DAG's ``teardown`` param). Each uses its own config: namespace, connections, tables.

    The file stays: the next run of its DAG would create everything again, so the report says
    to delete (or pause) it. ``hook_for`` builds the Kubernetes hook of a connection id.
    """
    from zdtp_provider.operators.teardown import resolve_target_tables
    from zdtp_provider.teardown import teardown_task

    configs = {c.name: (p, c) for p, c in load_folder(folder).valid.items()}
    unknown = [t for t in tasks if t not in configs]
    if unknown:
        raise ValueError(f"no valid sync-task file declares {', '.join(unknown)} (in {folder})")
    reports = []
    for name in tasks:
        path, config = configs[name]
        source, target = dsn(config.source_conn_id), dsn(config.target_conn_id)
        report = teardown_task(
            hook=hook_for(config.kubernetes_conn_id),
            task=name,
            namespace=config.namespace,
            source_dsn=source,
            target_dsn=target,
            target_tables=resolve_target_tables(config.model_dump(mode="json"), source),
        )
        report["note"] = f"{path} still declares {name}: delete or pause its DAG, or a run recreates it"
        reports.append(report)
    return reports
