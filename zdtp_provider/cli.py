"""``zdtp`` command line for sync-task files: ``validate``, ``plan`` and ``render``.

``render`` prints the Kubernetes objects the DAG would create, like ``helm template``: built by
the same operators' pure manifest code, with credentials referenced as a Secret by name (never
rendered). ``plan`` and ``render`` read the source catalog; the source DSN comes from
``--source-dsn``, ``$ZDTP_SOURCE_DSN``, or the sync task's Airflow connection.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from types import SimpleNamespace
from typing import Any

import yaml

from zdtp_provider.config import ConfigError, SyncTaskConfig, load_config


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
        raise ConfigError(
            f"source connection {config.source_conn_id!r}: {exc} (or pass --source-dsn / set ZDTP_SOURCE_DSN)"
        ) from None


def _plan(config: SyncTaskConfig, args: argparse.Namespace):
    from zdtp_provider.planner import plan_workers, read_catalog

    estimates = read_catalog(_source_dsn(config, args.source_dsn), config)
    return estimates, plan_workers(config, estimates, run_id=args.run_id, workers=args.workers)


def cmd_validate(args: argparse.Namespace) -> int:
    bad = 0
    for path in args.files:
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            print(f"invalid: {exc}", file=sys.stderr)
            bad += 1
            continue
        schedule = cfg.schedule or "on demand"
        print(f"ok: {path}: DAG {cfg.dag_id}, mode {cfg.mode}, fan-out {cfg.fanout}, {schedule}")
    return 1 if bad else 0


def cmd_plan(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    if config.mode == "incremental":
        print(f"{config.dag_id}: incremental only: one Deployment streams {', '.join(config.tables)}")
        return 0
    estimates, specs = _plan(config, args)
    if args.output == "json":
        print(json.dumps([s.model_dump(mode="json", by_alias=True) for s in specs], indent=2))
        return 0
    rows = {e.name: e.rows for e in estimates}
    print(
        f"{config.dag_id}: {len(specs)} worker(s) for {len(estimates)} table(s), ~{sum(rows.values())} rows"
    )
    for spec in specs:
        print(f"  {spec.worker}:")
        for t in spec.tables:
            rng = f" keys [{_b(t.key_range.lower)}, {_b(t.key_range.upper)})" if t.key_range else ""
            print(f"    {t.source}{rng}  (~{rows.get(str(t.source), 0)} rows in table)")
    return 0


def _b(bound: list[Any] | None) -> str:
    return "…" if bound is None else ",".join(map(str, bound))


def _render_context(config: SyncTaskConfig, run_id: str) -> dict[str, Any]:
    ti = SimpleNamespace(dag_id=config.dag_id, task_id="copy", map_index=-1, try_number=1)
    return {"run_id": run_id, "ti": ti}


def cmd_render(args: argparse.Namespace) -> int:
    from kubernetes.client import ApiClient

    from zdtp_provider.dag_factory import _pod_kwargs

    config = load_config(args.file)
    secret = f"zdtp-{config.name}-credentials"
    kwargs = {**_pod_kwargs(config), "credentials_secret": secret}
    kwargs.pop("source_conn_id")
    kwargs.pop("target_conn_id")
    docs: list[dict] = []
    serialize = ApiClient().sanitize_for_serialization
    if config.mode != "incremental":
        _, specs = _plan(config, args)
        if config.fanout == "indexed-job":
            from zdtp_provider.operators.job import IndexedFullSyncJobOperator

            op = IndexedFullSyncJobOperator(task_id="copy", specs=specs, parallelism=config.workers, **kwargs)
            body, inputs = op._render_job(_render_context(config, args.run_id))
            docs += [serialize(c) for c in inputs.companions] + [body]
        else:
            from zdtp_provider.operators.full import FullSyncOperator

            for i, spec in enumerate(specs):
                op = FullSyncOperator(task_id=f"copy-{i}", spec=spec, **kwargs)
                pod = op.build_pod_request_obj(None, dry_run=True)
                docs += [serialize(c) for c in op._companions] + [serialize(pod)]
    if config.mode != "full":
        from zdtp_provider.operators.incremental import IncrementalSyncOperator

        spec = {"mode": "incremental", "task": config.name, "run_id": "stream", "tables": config.tables}
        op = IncrementalSyncOperator(task_id="stream", spec=spec, **kwargs)
        body, companions = op.render_manifests()
        docs += [serialize(c) for c in companions] + [body]
    print(f"# zdtp render {args.file}: credentials come from Secret {secret!r} (not rendered)")
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
        p.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        return _fail(str(exc))
    except Exception as exc:  # planning/catalog problems: one line, no traceback, no DSN
        from zdtp_worker.credentials import redact

        return _fail(redact(f"{type(exc).__name__}: {exc}".splitlines()[0]))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
