"""The envelope around a WorkerSpec: how a pod hands the worker its spec, credentials and index,
how the worker is invoked, and where it leaves its result. Both sides import these names, so a
rename is one edit and the provider never spells an env var the worker does not read.
"""

from __future__ import annotations

from typing import Literal

WORKER_COMMAND = ("zdtp-worker",)

SPEC_ENV = "ZDTP_WORKER_SPEC"
SPEC_FILE_ENV = "ZDTP_WORKER_SPEC_FILE"
INDEX_ENV = "ZDTP_JOB_INDEX"
LOG_LEVEL_ENV = "ZDTP_LOG_LEVEL"
TERMINATION_LOG_ENV = "ZDTP_TERMINATION_LOG"
# Overrides the spec's run id: a CronJob's Job sets it to its own name, so every scheduled run is
# a fresh copy (checkpoints are keyed by run id) while a pod retry inside one Job resumes it.
RUN_ID_ENV = "ZDTP_RUN_ID"

TERMINATION_LOG = "/dev/termination-log"
CREDENTIALS_DIR = "/var/run/zdtp/credentials"
SPEC_DIR = "/etc/zdtp/spec"

Role = Literal["source", "target", "queue"]  # "queue": the Redis work-queue URL, when used


def dsn_env(role: Role) -> str:
    """Env var holding a DSN literally (local runs and tests; pods use :func:`dsn_file_env`)."""
    return f"ZDTP_{role.upper()}_DSN"


def dsn_file_env(role: Role) -> str:
    """Env var naming the mounted Secret file that holds the DSN."""
    return f"{dsn_env(role)}_FILE"


def full_args(*, queue: str | None = None, queue_mode: str | None = None, enqueue: bool = False) -> list[str]:
    """``zdtp-worker`` arguments of a full-sync worker (spec from env or mounted file); ``enqueue``:
    plan the spec's tables and put their chunks on ``full.queue`` instead of copying."""
    args = ["full", "--enqueue"] if enqueue else ["full"]
    if queue:
        args += ["--queue", queue]
    if queue_mode:
        args += ["--queue-mode", queue_mode]
    return args


def incremental_args(*, initial_snapshot: bool = False) -> list[str]:
    """``zdtp-worker`` arguments of an incremental (CDC) worker."""
    return ["incremental", "--initial-snapshot"] if initial_snapshot else ["incremental"]
