"""``zdtp teardown`` and ``zdtp status``: the life of a sync task after its DAG ran.

Both take a sync-task file (everything comes from it: task name, namespace, connections) or, for
a task whose file is gone, the bare task name plus ``--namespace`` and the DSNs. DSNs come from
``--source-dsn``/``--target-dsn``, ``$ZDTP_SOURCE_DSN``/``$ZDTP_TARGET_DSN``, or the file's
Airflow connections; the cluster from ``--kubeconfig`` (or ``$KUBECONFIG``), else the file's
``kubernetes_conn_id``. A part without its handle is skipped and said so, never guessed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from zdtp_provider.config import SyncTaskConfig, load_config


@contextlib.contextmanager
def _stdout_to_stderr():
    """Everything written to stdout meanwhile goes to stderr, at the descriptor level: Airflow's
    log handlers hold their own reference to stdout, so ``redirect_stdout`` alone misses them.
    stdout stays for the report (``-o json`` must parse)."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _conn_dsn(conn_id: str) -> str | None:
    from airflow.sdk import BaseHook

    from zdtp_provider.connections import dsn_from_connection

    try:
        return dsn_from_connection(BaseHook.get_connection(conn_id))
    except Exception:
        return None


def _dsn(explicit: str | None, env: str, conn_id: str | None) -> str | None:
    return explicit or (os.environ.get(env) if env else None) or (_conn_dsn(conn_id) if conn_id else None)


def _hook(args: argparse.Namespace, config: SyncTaskConfig | None):
    from zdtp_provider.hooks.kubernetes import ZdtpKubernetesHook

    kubeconfig = args.kubeconfig or os.environ.get("KUBECONFIG")
    if kubeconfig:
        return ZdtpKubernetesHook(conn_id=None, config_file=kubeconfig)
    if config is not None:
        return ZdtpKubernetesHook(conn_id=config.kubernetes_conn_id)
    return None


def _target(args: argparse.Namespace, ref: str) -> tuple[str, SyncTaskConfig | None, str]:
    """(task, config or None, namespace) for a file path or a bare task name."""
    if Path(ref).is_file():
        config = load_config(ref)
        return config.name, config, args.namespace or config.namespace
    return ref, None, args.namespace or "zdtp"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--namespace", help="Kubernetes namespace (default: the file's, else 'zdtp')")
    p.add_argument("--source-dsn", help="source DSN (default: $ZDTP_SOURCE_DSN or the file's connection)")
    p.add_argument("--target-dsn", help="target DSN (default: $ZDTP_TARGET_DSN or the file's connection)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else the file's connection)")


def cmd_teardown(args: argparse.Namespace) -> int:
    task, config, namespace = _target(args, args.ref)
    with _stdout_to_stderr():
        report = _teardown(args, task=task, config=config, namespace=namespace)
    if args.output == "json":
        print(json.dumps(report, indent=2))
        return 0
    print(f"teardown of sync task {task} (namespace {namespace}):")
    for line in report["removed"] or ["nothing left to remove"]:
        print(f"  removed {line}" if report["removed"] else f"  {line}")
    for line in report["kept"]:
        print(f"  kept {line}: not created by zdtp")
    for line in report["skipped"]:
        print(f"  skipped {line}")
    return 0


def _teardown(
    args: argparse.Namespace, *, task: str, config: SyncTaskConfig | None, namespace: str
) -> dict[str, Any]:
    from zdtp_provider.operators.teardown import resolve_target_tables
    from zdtp_provider.teardown import teardown_task

    source = _dsn(args.source_dsn, "ZDTP_SOURCE_DSN", config.source_conn_id if config else None)
    target = _dsn(args.target_dsn, "ZDTP_TARGET_DSN", config.target_conn_id if config else None)
    tables = list(args.table or [])
    if not tables and config is not None:
        tables = resolve_target_tables(config.model_dump(), source)
    return teardown_task(
        hook=_hook(args, config),
        task=task,
        namespace=namespace,
        source_dsn=source,
        target_dsn=target,
        target_tables=tables,
        timeout=args.timeout,
    )


def _configs(ref: str | None) -> list[SyncTaskConfig]:
    from zdtp_provider.sync_files import load_folder

    path = Path(ref or os.environ.get("ZDTP_SYNCS_DIR") or "dags/syncs")
    if path.is_file():
        return [load_config(path)]
    found = load_folder(path)
    for bad, message in found.errors.items():
        print(f"zdtp: skipping {bad}: {message.splitlines()[0]}", file=sys.stderr)
    return sorted(found.valid.values(), key=lambda c: c.name)


def cmd_status(args: argparse.Namespace) -> int:
    from zdtp_provider.operators.teardown import resolve_target_tables
    from zdtp_provider.status import status_line, task_status

    single = args.ref is not None and Path(args.ref).is_file()
    rows = []
    with _stdout_to_stderr():
        for config in _configs(args.ref):
            # Explicit DSNs only make sense for one file; a folder uses each task's connections.
            source = _dsn(
                args.source_dsn if single else None,
                "ZDTP_SOURCE_DSN" if single else "",
                config.source_conn_id,
            )
            target = _dsn(
                args.target_dsn if single else None,
                "ZDTP_TARGET_DSN" if single else "",
                config.target_conn_id,
            )
            tables = resolve_target_tables(config.model_dump(mode="json"), source) if config.include else None
            rows.append(
                task_status(
                    config, hook=_hook(args, config), source_dsn=source, target_dsn=target, tables=tables
                )
            )
    if args.output == "json":
        print(json.dumps(rows, indent=2, default=str))
    else:
        for row in rows:
            print(status_line(row))
    return 0


def add_commands(sub: Any) -> None:
    """Register ``teardown`` (and ``status``) on the ``zdtp`` parser's subcommands."""
    t = sub.add_parser("teardown", help="remove a sync task's workers, slot, publication and state")
    t.add_argument("ref", metavar="FILE|TASK")
    _common(t)
    t.add_argument("--table", action="append", help="target table whose full-copy state to remove")
    t.add_argument("--timeout", type=float, default=120, help="seconds to wait for objects to go")
    t.add_argument("-o", "--output", choices=["text", "json"], default="text")
    t.set_defaults(func=cmd_teardown)
    s = sub.add_parser("status", help="one line per sync task: stream, lag, retained WAL, last copy/verify")
    s.add_argument("ref", metavar="FILE|DIR", nargs="?", help="default: $ZDTP_SYNCS_DIR or dags/syncs")
    _common(s)
    s.add_argument("-o", "--output", choices=["text", "json"], default="text")
    s.set_defaults(func=cmd_status)
