"""Remove what a sync task left in the databases: its slot and publication on the source, its
state rows in the target's ``zdtp`` schema; and find such leftovers whose sync task is gone.

Ownership is by name, the same rule :mod:`.slot_guard` and :mod:`.publication` use to create:
zdtp drops only ``zdtp_*`` slots and publications, and only the ones derived from the task
(:func:`.names.task_stream_name`). A sync that names a foreign publication keeps it: teardown
reports it as ``kept`` and never touches it. Every step is idempotent (already gone = fine).

State rows, by what identifies a task in them:

- ``zdtp.cdc_state``: the stream key (= the slot name);
- ``zdtp.work_queue``: queue names ``<task>.<run hash>`` (:func:`.queue.queue_name`);
- ``zdtp.verify_log``: the task's name (each verify's outcome, :mod:`.verify_log`);
- ``zdtp.full_plans`` / ``full_chunks`` / ``full_tables`` / ``full_parts``: keyed by run and
  *target table*, not by task, so they are removed for the task's target tables only when the
  caller names them (the provider does, from the config).

The Kubernetes half lives in ``zdtp_provider.teardown``; it runs first, so no worker still reads
the slot when it is dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg

from zdtp_worker.control import publication as _publication
from zdtp_worker.control import slot_guard
from zdtp_worker.control.session import connect
from zdtp_worker.pg.quoting import ident

log = logging.getLogger(__name__)

# A walsender can outlive its pod by a moment (TCP keepalive); wait before terminating it.
ACTIVE_SLOT_WAIT_S = 15.0


@dataclass
class Removed:
    """What one teardown step found and did (``kept``: found but not zdtp's, left alone)."""

    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        return {"removed": list(self.removed), "kept": list(self.kept)}


def _terminate_reader(conn: psycopg.Connection, slot: str, *, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while (state := slot_guard.read_slot(conn, slot)) is not None and state.active_pid:
        if time.monotonic() > deadline:
            log.warning("slot %s still read by pid %s: terminating that backend", slot, state.active_pid)
            conn.execute("SELECT pg_terminate_backend(%s)", (state.active_pid,))
            deadline = time.monotonic() + wait_s
        time.sleep(0.5)


def drop_source_objects(
    source_dsn: str, *, slot: str, publication: str, active_wait_s: float = ACTIVE_SLOT_WAIT_S
) -> Removed:
    """Drop the task's slot and publication when they are zdtp's; report foreign ones as kept."""
    out = Removed()
    conn = connect(source_dsn, role="source", application_name="zdtp-teardown")
    try:
        if slot and not slot_guard.is_zdtp_name(slot):
            out.kept.append(f"slot {slot}")
        elif slot and slot_guard.read_slot(conn, slot) is not None:
            _terminate_reader(conn, slot, wait_s=active_wait_s)
            if slot_guard.drop_own_slot(conn, slot):
                out.removed.append(f"slot {slot}")
        exists = (
            publication
            and conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,)).fetchone()
        )
        if exists and not _publication.is_own(publication):
            out.kept.append(f"publication {publication}")
        elif exists:
            conn.execute(f"DROP PUBLICATION IF EXISTS {ident(publication)}")
            log.info("dropped publication %s", publication)
            out.removed.append(f"publication {publication}")
    finally:
        conn.close()
    return out


def _exists(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s)", (f"zdtp.{table}",)).fetchone() != (None,)


def delete_target_state(
    target_dsn: str, *, task: str | None, stream: str | None, target_tables: Iterable[str] = ()
) -> Removed:
    """Delete the task's rows from the target's ``zdtp`` state tables (one transaction).

    ``task`` selects its work queues, ``stream`` its CDC position; ``None`` leaves that part."""
    out = Removed()
    tables = sorted(set(target_tables))
    conn = connect(target_dsn, role="target", application_name="zdtp-teardown", autocommit=False)
    try:
        with conn.transaction():
            steps: list[tuple[str, str, tuple]] = []
            if stream:
                steps.append(("cdc_state", "DELETE FROM zdtp.cdc_state WHERE stream = %s", (stream,)))
            if task:
                # queue names are '<task>.<hash>'; LIKE needs the task's own '_' and '%' escaped.
                steps.append(
                    ("work_queue", "DELETE FROM zdtp.work_queue WHERE queue LIKE %s", (_like_prefix(task),))
                )
                steps.append(("verify_log", "DELETE FROM zdtp.verify_log WHERE task = %s", (task,)))
            if tables:
                for name, col in (
                    ("full_chunks", "target_table"),
                    ("full_plans", "target_table"),
                    ("full_parts", "target"),
                    ("full_tables", "target"),
                ):
                    steps.append((name, f"DELETE FROM zdtp.{name} WHERE {col} = ANY(%s)", (tables,)))
            for name, sql, args in steps:
                if _exists(conn, name):
                    count = conn.execute(sql, args).rowcount
                    if count:
                        out.removed.append(f"zdtp.{name}: {count} row(s)")
    finally:
        conn.close()
    return out


def _like_prefix(task: str) -> str:
    escaped = task.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}.%"


# ---------------------------------------------------------------- leftovers of vanished tasks


def source_objects(source_dsn: str) -> dict[str, list[str]]:
    """zdtp's slots (of this database) and publications on the source, by kind."""
    with connect(source_dsn, role="source", application_name="zdtp-maintenance") as conn:
        slots = conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = current_database()"
            " AND slot_name LIKE 'zdtp\\_%' ORDER BY 1"
        ).fetchall()
        pubs = conn.execute(
            "SELECT pubname FROM pg_publication WHERE pubname LIKE 'zdtp\\_%' ORDER BY 1"
        ).fetchall()
    return {"slot": [r[0] for r in slots], "publication": [r[0] for r in pubs]}


def target_streams(target_dsn: str) -> dict[str, list[str]]:
    """Stream keys in ``zdtp.cdc_state``, task names of queues in ``zdtp.work_queue`` and of
    verifies in ``zdtp.verify_log``."""
    out: dict[str, list[str]] = {"stream": [], "queue_task": [], "verify_task": []}
    with connect(target_dsn, role="target", application_name="zdtp-maintenance") as conn:
        if _exists(conn, "cdc_state"):
            out["stream"] = [r[0] for r in conn.execute("SELECT stream FROM zdtp.cdc_state ORDER BY 1")]
        if _exists(conn, "work_queue"):
            rows = conn.execute(
                "SELECT DISTINCT split_part(queue, '.', 1) FROM zdtp.work_queue ORDER BY 1"
            ).fetchall()
            out["queue_task"] = [r[0] for r in rows]
        if _exists(conn, "verify_log"):
            rows = conn.execute("SELECT DISTINCT task FROM zdtp.verify_log ORDER BY 1").fetchall()
            out["verify_task"] = [r[0] for r in rows]
    return out
