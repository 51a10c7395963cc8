"""Re-run guard of a ``full+incremental`` DAG: no copy while the task's stream exists.

Why: a copy that runs while the stream applies changes reads each chunk under a snapshot taken
before some changes the stream has already written; committing that chunk puts the older rows
back (lost updates, silently). And a stream that is only stopped would resume from its old
position over a target the copy just redefined. So the run's first step (``prepare_stream``,
before it writes anything) reads three facts and refuses when any says a stream exists:

- the stream's Deployment (``zdtp-<task>-w0-cdc``) exists: replicas >= 1 = running, 0 = stopped;
- the task's slot is active (someone reads it, wherever that runs);
- the target's ``zdtp.cdc_state`` holds an applied position for the stream.

None of them holds after ``zdtp teardown`` (it removes all three) and before the first stream
ever ran (a run whose copy or verify failed left at most an unread slot: re-running it is safe,
the slot's changes are replayed idempotently). The way to resync is therefore: teardown, then
trigger again; the refusal says exactly that. See docs/lifecycle.md ("Re-running").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from zdtp_worker.control import status as db
from zdtp_worker.control.names import task_stream_name

# Runs nobody asked for by hand: refused while the stream runs, they are skipped (see
# ``decide``). Values of Airflow's DagRunType.
AUTOMATIC_RUN_TYPES = frozenset({"scheduled", "asset_triggered", "asset_materialization"})


@dataclass(frozen=True)
class StreamFacts:
    """What exists of a task's stream; ``None`` fields: that thing does not exist."""

    deployment: str
    namespace: str
    replicas: int | None = None  # the Deployment's spec.replicas; None: no Deployment
    created: str | None = None  # its creationTimestamp (ISO)
    slot: str = ""
    slot_exists: bool = False
    slot_active: bool = False
    applied: dict[str, Any] | None = None  # zdtp.cdc_state row (end_lsn, updated_at, ...)

    @property
    def running(self) -> bool:
        return bool(self.replicas) or self.slot_active

    @property
    def exists(self) -> bool:
        return self.replicas is not None or self.slot_active or self.applied is not None


@dataclass(frozen=True)
class Refusal:
    running: bool  # False: the stream exists but is stopped
    message: str


def read_facts(
    *, task: str, namespace: str, deployment: str, hook: Any, source_dsn: str, target_dsn: str
) -> StreamFacts:
    """Read only: the Deployment from the API, the slot from the source, the applied position
    from the target. Any error propagates: unsure whether a stream runs means no copy."""
    slot = task_stream_name(task)
    dep = hook.read_deployment(deployment, namespace)
    replicas = created = None
    if dep is not None:
        replicas = int(dep.spec.replicas if dep.spec.replicas is not None else 1)
        stamp = dep.metadata.creation_timestamp
        created = stamp.isoformat() if isinstance(stamp, dt.datetime) else (str(stamp) if stamp else None)
    state = db.slot_status(source_dsn, slot)
    applied = db.target_status(target_dsn, stream=slot, tables=[])["applied"]
    return StreamFacts(
        deployment=deployment,
        namespace=namespace,
        replicas=replicas,
        created=created,
        slot=slot,
        slot_exists=bool(state.get("exists")),
        slot_active=bool(state.get("active")),
        applied=applied,
    )


def resync_commands(*, task: str, dag_id: str, source_file: str | None) -> str:
    """The manual resync, as commands (the file's connections and kubernetes_conn_id resolve
    where Airflow's do: run it there, or add --source-dsn/--target-dsn/--kubeconfig)."""
    ref = source_file or task
    flags = "" if source_file else " --namespace <ns> --source-dsn <dsn> --target-dsn <dsn> --table <t>..."
    return (
        f"`zdtp teardown {ref}{flags}` (or trigger the zdtp_maintenance DAG with"
        f' teardown=["{task}"]), then `airflow dags trigger {dag_id}`'
    )


def refusal(facts: StreamFacts, *, task: str, dag_id: str, source_file: str | None) -> Refusal | None:
    """``None`` when no stream of ``task`` exists (the copy may run), else why not and what to do."""
    if not facts.exists:
        return None
    seen = []
    if facts.replicas is not None:
        seen.append(
            f"Deployment {facts.namespace}/{facts.deployment} with {facts.replicas} replica(s)"
            + (f" since {facts.created}" if facts.created else "")
        )
    if facts.slot_exists:
        seen.append(f"slot {facts.slot} {'active' if facts.slot_active else 'not read'}")
    if facts.applied:
        seen.append(f"last applied {facts.applied.get('end_lsn')} at {facts.applied.get('updated_at')}")
    what = ", ".join(seen)
    resync = resync_commands(task=task, dag_id=dag_id, source_file=source_file)
    if facts.running:
        return Refusal(
            True,
            f"sync task {task!r}: the stream is running ({what}); a new copy would overwrite rows the"
            f" stream has already updated, so this run copies nothing. To resync: {resync}.",
        )
    resume = (
        f" Resume it (ResumeIncrementalSyncOperator, or `kubectl -n {facts.namespace} scale"
        f" deployment {facts.deployment} --replicas=1`), or resync:"
        if facts.replicas == 0
        else " To resync:"
    )
    return Refusal(
        False,
        f"sync task {task!r}: its stream exists but is stopped ({what}); a copy is only safe with"
        f" no stream of the task, so this run copies nothing.{resume} {resync}.",
    )


def decide(found: Refusal | None, *, run_type: str) -> str:
    """``"go"``, ``"skip"`` or ``"fail"`` for a run of ``run_type`` (Airflow's DagRunType value).

    A scheduled (or asset-triggered) run that finds its stream running is skipped: a schedule on
    a ``full+incremental`` DAG then means "start the stream when there is none" and a healthy
    stream is its normal state, so failing would page on every tick. Anything a person must act
    on fails: a refused manual run (they asked for a copy that did not happen) and a stopped
    stream, whatever started the run.
    """
    if found is None:
        return "go"
    if found.running and run_type in AUTOMATIC_RUN_TYPES:
        return "skip"
    return "fail"
