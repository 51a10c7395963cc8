"""The database steps of a sync run that the Airflow worker itself performs (no pod): stream
preparation before the copy and the verification after it. The database work itself is
:mod:`zdtp_worker.control` (psycopg 3 only); this module adapts it to the provider's sync-task
config.

- :func:`verify_run` — after the copy: the run's recorded per-chunk evidence (source side taken
  under each chunk's snapshot, target side in the transaction that wrote it), coverage and the
  target's totals; never reads the source, so it holds on a source that keeps writing. Logged in
  the target's ``zdtp.verify_log``.
- :func:`compare_tables` — live row counts (or checksums) source vs target; only meaningful on a
  quiet source (tests and demos use it as an independent check).
- :func:`prepare_stream` — before a full+incremental copy: publication and logical slot, so every
  change after this point is retained for the incremental worker.

The hand-off for ``full+incremental``: the slot is created *before* the parallel copy starts and
the incremental worker only starts *after* the copy finished. Changes committed between the slot
and a chunk's snapshot are therefore both in the copy and in the stream; the worker applies them
as upserts/deletes keyed by primary key in commit order, which converges to the source (no gap,
no duplicate row). One exported snapshot shared by N pods would need a connection held open
across tasks — fragile under Airflow retries — so zdtp trades it for idempotent replay.
"""

from __future__ import annotations

from zdtp_provider.config import SyncTaskConfig
from zdtp_worker.contract.spec import WorkerSpec
from zdtp_worker.control.names import publication_name, slot_name
from zdtp_worker.control.stream_setup import prepare_stream as _prepare_stream
from zdtp_worker.control.verify import (
    RunVerification,
    TableComparison,
    TableVerification,
    compare_tables,
)
from zdtp_worker.control.verify import verify_run as _verify_run

__all__ = [
    "RunVerification",
    "TableComparison",
    "TableVerification",
    "compare_tables",
    "planned_tables",
    "planned_targets",
    "prepare_stream",
    "verify_run",
]


def planned_tables(specs: list[WorkerSpec]) -> list[str]:
    """Distinct source tables of a plan, in plan order (a split table appears once)."""
    seen: dict[str, None] = {}
    for spec in specs:
        for table in spec.tables:
            seen.setdefault(str(table.source), None)
    return list(seen)


def planned_targets(specs: list[WorkerSpec]) -> list[str]:
    """Distinct target tables of a plan, in plan order: what the run's chunks are recorded under."""
    seen: dict[str, None] = {}
    for spec in specs:
        for table in spec.tables:
            seen.setdefault(str(table.target_name), None)
    return list(seen)


def verify_run(
    *, target_dsn: str, config: SyncTaskConfig, run_id: str, specs: list[WorkerSpec]
) -> RunVerification:
    """Verify run ``run_id`` at the config's ``verify`` level from what its chunks recorded."""
    return _verify_run(
        target_dsn=target_dsn,
        task=config.name,
        run_id=run_id,
        tables=planned_targets(specs),
        level=config.verify,
    )


def prepare_stream(
    *, source_dsn: str, config: SyncTaskConfig, tables: list[str], target_dsn: str | None = None
) -> dict[str, str]:
    """Check the source for CDC, then create the task's publication and slot if missing.

    The same pre-flight checks and idempotent set-up the incremental worker runs at start, so a
    source that cannot stream fails here, before any data is copied.
    """
    spec = WorkerSpec(
        mode="incremental", task=config.name, run_id="prepare", tables=[{"source": t} for t in tables]
    )
    slot, publication = slot_name(spec), publication_name(spec)
    _prepare_stream(
        source_dsn=source_dsn,
        tables=[t.source for t in spec.tables],
        slot=slot,
        publication=publication,
        # Given for full+incremental: a copy follows, so the stream restarts from the slot.
        restart_on_target=target_dsn,
        set_replica_identity=config.set_replica_identity,
        handoff=config.mode == "full+incremental",
    )
    return {"slot": slot, "publication": publication}
