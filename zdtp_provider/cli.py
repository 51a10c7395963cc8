"""``zdtp`` command line for sync-task files: ``validate``, ``plan``, ``render`` (and ``teardown``,
``status`` from :mod:`.lifecycle_cli`).

``render`` prints the Kubernetes objects a run of the DAG would apply, like ``helm template``:
built by the same workload-layer functions the DAG's operators call
(:func:`zdtp_provider.workload.sync_task.render_sync_task`), for the same plan, run id and task
identity. The credentials Secret is printed with its values redacted. ``plan`` and ``render``
read the source catalog; the source DSN comes from ``--source-dsn``, ``$ZDTP_SOURCE_DSN``, or the
sync task's Airflow connection. ``plan`` also checks tables that already exist on the target, like
the DAG's plan task (``--target-dsn``, ``$ZDTP_TARGET_DSN`` or the task's target connection).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

import yaml

from zdtp_provider.config import SyncConfigError, SyncTaskConfig, load_config


def _fail(message: str) -> int:
    print(f"zdtp: error: {message}", file=sys.stderr)
    return 1


def _source_dsn(config: SyncTaskConfig, explicit: str | None) -> str:
    if explicit or os.environ.get("ZDTP_SOURCE_DSN"):
        return explicit or os.environ["ZDTP_SOURCE_DSN"]
    from airflow.sdk import BaseHook

    from zdtp_provider.connections import dsn_from_connection

    try:
        return dsn_from_connection(BaseHook.get_connection(config.source_conn_id))
    except Exception as exc:
        raise SyncConfigError(
            f"source connection {config.source_conn_id!r}: {exc} (or pass --source-dsn / set ZDTP_SOURCE_DSN)"
        ) from None


def _target_dsn(config: SyncTaskConfig, explicit: str | None) -> str | None:
    """Like the DAG's plan, check tables already on the target; ``None`` (and a note) if unknown."""
    if explicit or os.environ.get("ZDTP_TARGET_DSN"):
        return explicit or os.environ["ZDTP_TARGET_DSN"]
    try:
        from airflow.sdk import BaseHook

        from zdtp_provider.connections import dsn_from_connection

        return dsn_from_connection(BaseHook.get_connection(config.target_conn_id))
    except Exception:
        print(
            f"zdtp: note: target not checked (no --target-dsn, $ZDTP_TARGET_DSN or connection "
            f"{config.target_conn_id!r}): existing target tables are checked when the run plans",
            file=sys.stderr,
        )
        return None


def _plan(config: SyncTaskConfig, args: argparse.Namespace):
    from zdtp_provider.planner import check_copyable, check_streamable, plan_workers, read_catalog

    dsn = _source_dsn(config, args.source_dsn)
    target_dsn = _target_dsn(config, args.target_dsn)
    estimates = read_catalog(dsn, config, target_dsn=target_dsn)
    if target_dsn is None:
        # read_catalog runs the worker's source refusals only with a target (teardown reads the
        # catalog too and must not be refused); a plan without one still refuses what the source
        # alone decides: row-level security, unreadable columns/sequences, large objects.
        check_copyable(dsn, config, [e.name for e in estimates])
    check_streamable(dsn, config, [e.name for e in estimates])  # CDC modes only
    return estimates, plan_workers(config, estimates, run_id=args.run_id, workers=args.workers)


def cmd_validate(args: argparse.Namespace) -> int:
    bad = 0
    for path in args.files:
        try:
            cfg = load_config(path)
        except SyncConfigError as exc:
            print(f"invalid: {exc}", file=sys.stderr)
            bad += 1
            continue
        if cfg.mode != "full" and os.environ.get("ZDTP_SOURCE_DSN"):
            # With a source at hand, also refuse tables CDC cannot stream (same check as plan).
            from zdtp_provider.planner import PlanningError, check_streamable, read_catalog

            dsn = os.environ["ZDTP_SOURCE_DSN"]
            try:
                check_streamable(dsn, cfg, [e.name for e in read_catalog(dsn, cfg)])
            except PlanningError as exc:
                print(f"invalid: {path}: {exc}", file=sys.stderr)
                bad += 1
                continue
        schedule = cfg.schedule or "on demand"
        print(f"ok: {path}: DAG {cfg.dag_id}, mode {cfg.mode}, fan-out {cfg.fanout}, {schedule}")
    return 1 if bad else 0


def cmd_plan(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    if config.mode == "incremental":
        from zdtp_provider.planner import check_streamable, read_catalog

        dsn = _source_dsn(config, args.source_dsn)
        streamed = [e.name for e in read_catalog(dsn, config)]
        check_streamable(dsn, config, streamed)  # no usable replica identity: refused, with the fix
        print(f"{config.dag_id}: incremental only: one Deployment streams {', '.join(streamed)}")
        return 0
    estimates, specs = _plan(config, args)
    if args.output == "json":
        print(json.dumps([s.model_dump(mode="json", by_alias=True) for s in specs], indent=2))
        return 0
    rows = {e.name: e.rows for e in estimates}
    print(
        f"{config.dag_id}: {len(specs)} worker(s) for {len(estimates)} table(s), ~{sum(rows.values())} rows"
    )
    how = "set by `streams`" if config.streams is not None else "chosen from table size and CPU request"
    for spec in specs:
        print(f"  {spec.worker}: {spec.full.streams} COPY stream(s), {how}")
        for t in spec.tables:
            rng = f" keys [{_b(t.key_range.lower)}, {_b(t.key_range.upper)})" if t.key_range else ""
            print(f"    {t.source}{rng}  (~{rows.get(str(t.source), 0)} rows in table)")
    from zdtp_provider.workload.batch import fanout_summary

    print(f"  copy (fanout {config.fanout}): {fanout_summary(config, len(specs))}")
    for note in sorted({f"{e.name}: {e.note}" for e in estimates if e.note}):
        print(f"  note: {note}")
    return 0


def _b(bound: list[Any] | None) -> str:
    return "…" if bound is None else ",".join(map(str, bound))


REDACTED = "<redacted>"


def _render_dsns(config: SyncTaskConfig) -> tuple[dict[str, str], str]:
    """The DSNs the DAG's operators would put in the credentials Secret, and a note.

    With the connections defined (Airflow connections or ``AIRFLOW_CONN_*``), the real DSNs: the
    Deployment's config hash then equals the one a run applies. Otherwise placeholders.
    """
    from zdtp_provider.k8s.secret import QUEUE_KEY
    from zdtp_provider.operators._inputs import lookup_dsns
    from zdtp_provider.queue_connection import resolve_queue_url
    from zdtp_provider.workload.sync_task import sync_task_options

    try:
        dsns = lookup_dsns(sync_task_options(config))
        if config.queue_conn_id:  # queue_backend redis: the queue Jobs' Secret holds the URL too
            dsns[QUEUE_KEY] = resolve_queue_url(config.queue_conn_id)
        return dsns, "values from the task's Airflow connections"
    except Exception as exc:
        note = f"connections not readable ({redact_line(exc)}): placeholder values, config hash differs"
        queue = {QUEUE_KEY: REDACTED} if config.queue_conn_id else {}
        return {"source-dsn": REDACTED, "target-dsn": REDACTED, **queue}, note


# Passwords in a URL DSN or a key=value conninfo an error message may quote.
_PASSWORD_IN_URL = re.compile(r"(://[^:/@]+:)[^@]*@")
_PASSWORD_KV = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def redact_line(exc: BaseException) -> str:
    """One line naming the error, with any password replaced by ``***``."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return _PASSWORD_KV.sub(r"\1***", _PASSWORD_IN_URL.sub(r"\1***@", text))


def _redacted(doc: dict) -> dict:
    if doc.get("kind") == "Secret":
        for key in ("stringData", "data"):
            if key in doc:
                doc[key] = {k: REDACTED for k in doc[key]}
    return doc


def render_documents(config: SyncTaskConfig, args: argparse.Namespace) -> tuple[list[dict], str]:
    """Every object one run would apply, Secrets redacted, with a note on the credentials."""
    from zdtp_provider.planner import plan_workers, read_catalog
    from zdtp_provider.workload.sync_task import render_sync_task

    estimates = read_catalog(_source_dsn(config, args.source_dsn), config)
    specs = []
    if config.mode != "incremental":
        specs = plan_workers(config, estimates, run_id=args.run_id, workers=args.workers)
    dsns, note = _render_dsns(config)
    rendered = render_sync_task(
        config, run_id=args.run_id, full_specs=specs, stream_tables=[e.name for e in estimates], dsns=dsns
    )
    return [_redacted(doc) for r in rendered for doc in r.documents()], note


def cmd_render(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    docs, note = render_documents(config, args)
    print(f"# zdtp render {args.file} (run id {args.run_id!r}); credentials Secret: {note}")
    print(yaml.safe_dump_all(docs, sort_keys=False), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zdtp", description="zdtp sync-task tools")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="check sync-task files")
    v.add_argument("files", nargs="+")
    v.set_defaults(func=cmd_validate)
    for name, func, text in (
        ("plan", cmd_plan, "show the workers a run would start"),
        ("render", cmd_render, "print the Kubernetes manifests a run would apply"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("file")
        p.add_argument("--source-dsn", help="source PostgreSQL DSN (default: the task's Airflow connection)")
        p.add_argument("--workers", type=int, help="override the number of workers")
        p.add_argument("--run-id", default="manual", help="run id written into the specs")
        if name == "plan":
            p.add_argument("-o", "--output", choices=["text", "json"], default="text")
            p.add_argument(
                "--target-dsn",
                help="target DSN: existing target tables must take the rows without loss, as in the "
                "DAG's plan (default: $ZDTP_TARGET_DSN or the task's Airflow connection)",
            )
        p.set_defaults(func=func)
    from zdtp_provider.lifecycle_cli import add_commands

    add_commands(sub)  # teardown, status
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SyncConfigError as exc:
        return _fail(str(exc))
    except ValueError as exc:  # a build error names its field
        return _fail(str(exc))
    except Exception as exc:  # planning/catalog problems: one line, no traceback, no DSN
        return _fail(redact_line(exc))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
