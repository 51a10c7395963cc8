"""``zdtp-worker`` command line: parse args, load the spec and credentials, run one mode, exit
with a documented code. Every failure ends as one line on stderr (passwords redacted) plus the
result summary; no stack traces for expected errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from zdtp_worker.contract.envelope import RUN_ID_ENV, SPEC_ENV, SPEC_FILE_ENV
from zdtp_worker.contract.errors import ConfigError, WorkerError
from zdtp_worker.contract.result import WorkerResult, write_result
from zdtp_worker.contract.spec import WorkerSpec
from zdtp_worker.credentials import redact
from zdtp_worker.logs import configure as configure_logs


def load_spec(spec_file: str | None, *, mode: str, queue: str | None = None) -> WorkerSpec:
    if spec_file:
        try:
            raw = Path(spec_file).read_text()
        except OSError as exc:
            raise ConfigError(f"--spec {spec_file}: {exc.strerror}") from None
        origin = spec_file
    elif os.environ.get(SPEC_FILE_ENV):
        origin = os.environ[SPEC_FILE_ENV]
        try:
            raw = Path(origin).read_text()
        except OSError as exc:
            raise ConfigError(f"{SPEC_FILE_ENV} {origin}: {exc.strerror}") from None
    elif os.environ.get(SPEC_ENV):
        raw, origin = os.environ[SPEC_ENV], SPEC_ENV
    else:
        raise ConfigError("no worker spec: pass --spec FILE or set ZDTP_WORKER_SPEC")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{origin}: malformed JSON: {exc}") from None
    if isinstance(data, dict):
        data.setdefault("mode", mode)
        if os.environ.get(RUN_ID_ENV):
            data["run_id"] = os.environ[RUN_ID_ENV]
        if queue and isinstance(data.get("full", {}), dict):
            # `full --queue NAME` with a table-less spec: the queue is the work, validate it so.
            data["full"] = {**data.get("full", {}), "queue": queue}
    try:
        spec = WorkerSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "spec"
        raise ConfigError(f"{origin}: {field}: {first['msg']}") from None
    if spec.mode != mode:
        raise ConfigError(f"{origin}: spec is for mode {spec.mode!r}, not {mode!r}")
    return spec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zdtp-worker", description="zdtp sync worker")
    sub = parser.add_subparsers(dest="mode", required=True)
    full = sub.add_parser("full", help="copy a snapshot of the spec's tables, then exit")
    full.add_argument("--spec", help="WorkerSpec JSON file (default: $ZDTP_WORKER_SPEC)")
    full.add_argument("--queue", help="take chunks from this work queue instead of the spec's tables")
    full.add_argument("--queue-mode", choices=["one", "drain"], help="one item then exit, or drain")
    full.add_argument(
        "--enqueue", action="store_true", help="plan the spec's tables and enqueue their chunks on full.queue"
    )
    inc = sub.add_parser("incremental", help="stream changes forever (logical replication)")
    inc.add_argument("--spec", help="WorkerSpec JSON file (default: $ZDTP_WORKER_SPEC)")
    inc.add_argument("--initial-snapshot", action="store_true", help="copy a snapshot first, then stream")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    spec: WorkerSpec | None = None
    try:
        spec = load_spec(args.spec, mode=args.mode, queue=getattr(args, "queue", None))
        configure_logs(spec)  # JSON lines with mode/task/run_id/worker from here on, both modes
        if args.mode == "full" and args.enqueue:
            from zdtp_worker.full.queue_run import enqueue_cli

            result = enqueue_cli(spec)
        elif args.mode == "full":
            from zdtp_worker.full.main import run_full_cli

            result = run_full_cli(spec, args)
        else:
            from zdtp_worker.incremental.main import run_incremental_cli

            result = run_incremental_cli(spec, args)
    except WorkerError as exc:
        message = redact(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"zdtp-worker: error: {message}", file=sys.stderr, flush=True)
        # What a full-sync worker finished before failing stays in the result, per table.
        tables = getattr(exc, "tables", None) or []
        result = WorkerResult(
            status="error",
            exit_code=int(exc.exit_code),
            mode=args.mode,
            run_id=spec.run_id if spec else "",
            worker=spec.worker if spec else "",
            rows=sum(t.rows for t in tables),
            bytes=sum(t.bytes for t in tables),
            chunks=sum(t.chunks for t in tables),
            seconds=round(time.monotonic() - started, 3),
            tables=tables,
            message=message,
        )
    write_result(result)
    return int(result.exit_code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
