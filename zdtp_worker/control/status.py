"""Where a sync task's stream and copies stand, read from the databases: the slot on the source
(retained WAL, active or since when not, invalidated), the applied position on the target, the
last full run and its verify. Plus the WAL guard's verdict, a pure function of those facts.

Read only; psycopg 3 (Airflow side: ``zdtp status``, ``IncrementalSyncSensor``). The Kubernetes
half of a status (Deployment, restarts, lag metric) is ``zdtp_provider.status``.

Why the guard: a slot nobody reads keeps every WAL segment since its position, until the source's
disk is full (or, with ``max_slot_wal_keep_size``, until the slot is invalidated and the stream
can only be rebuilt by a new full copy). Retained bytes are ``pg_current_wal_lsn() -
restart_lsn``; "stopped since" is ``inactive_since`` (PG 17+), else the target's last apply.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from zdtp_worker.control.session import connect

_SLOT = """
SELECT to_jsonb(s), pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint, now(),
       pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint
FROM pg_replication_slots s WHERE s.slot_name = %s
"""


def slot_status(source_dsn: str, slot: str) -> dict[str, Any]:
    """The slot as the source sees it (``exists`` False when there is none)."""
    with connect(source_dsn, role="source", application_name="zdtp-status") as conn:
        row = conn.execute(_SLOT, (slot,)).fetchone()
    if row is None:
        return {"slot": slot, "exists": False}
    data, retained, now, unconfirmed = row
    inactive = data.get("inactive_since")
    return {
        "slot": slot,
        "exists": True,
        "active": bool(data.get("active")),
        "wal_status": data.get("wal_status"),
        "invalidation_reason": data.get("invalidation_reason"),
        "retained_wal_bytes": None if retained is None else int(retained),
        # WAL written since the stream's last confirmed commit: its lag in bytes.
        "unconfirmed_bytes": None if unconfirmed is None else int(unconfirmed),
        "safe_wal_size": data.get("safe_wal_size"),
        "confirmed_flush_lsn": data.get("confirmed_flush_lsn"),
        "inactive_since": inactive,
        "checked_at": now.isoformat(),
    }


def publication_tables(source_dsn: str, publication: str) -> list[str]:
    """The tables a stream's publication carries (partition roots), as zdtp names them
    (``schema.table``): the stream's tables, when nothing else says which they are."""
    from zdtp_worker.contract.identifiers import render_qualified

    with connect(source_dsn, role="source", application_name="zdtp-status") as conn:
        rows = conn.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s ORDER BY 1, 2",
            (publication,),
        ).fetchall()
    return [render_qualified(schema, name) for schema, name in rows]


def _exists(conn: Any, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s)", (f"zdtp.{table}",)).fetchone() != (None,)


def target_status(
    target_dsn: str, *, stream: str, tables: list[str], task: str | None = None
) -> dict[str, Any]:
    """The stream's applied position, the last full run over ``tables`` and ``task``'s last verify.

    Each part is ``None`` when its state table is missing (an older zdtp, or nothing ran yet).
    """
    out: dict[str, Any] = {"applied": None, "last_full_run": None, "last_verify": None}
    with connect(target_dsn, role="target", application_name="zdtp-status") as conn:
        if _exists(conn, "cdc_state"):
            row = conn.execute(
                "SELECT end_lsn::text, commit_time, updated_at, transactions, changes"
                " FROM zdtp.cdc_state WHERE stream = %s",
                (stream,),
            ).fetchone()
            if row:
                out["applied"] = {
                    "end_lsn": row[0],
                    "commit_time": row[1].isoformat() if row[1] else None,
                    "updated_at": row[2].isoformat(),
                    "transactions": row[3],
                    "changes": row[4],
                }
        if tables and _exists(conn, "full_plans") and _exists(conn, "full_chunks"):
            out["last_full_run"] = _last_full_run(conn, tables)
        if task and _exists(conn, "verify_log"):
            out["last_verify"] = _last_verify(conn, task)
    return out


# The newest run over the tables is the one whose plan was made last (a run that failed before
# its first chunk still counts); its result: every planned chunk recorded, or how many are.
_LAST_RUN = """
WITH run AS (
    SELECT run_id FROM zdtp.full_plans WHERE target_table = ANY(%(t)s)
    GROUP BY run_id ORDER BY max(created_at) DESC LIMIT 1
), planned AS (
    SELECT min(p.created_at) AS started, sum(jsonb_array_length(p.chunks))::bigint AS chunks
    FROM zdtp.full_plans p JOIN run USING (run_id) WHERE p.target_table = ANY(%(t)s)
), done AS (
    SELECT max(c.done_at) AS finished, sum(c.rows)::bigint AS rows, count(*) AS chunks
    FROM zdtp.full_chunks c JOIN run USING (run_id) WHERE c.target_table = ANY(%(t)s)
)
SELECT run.run_id, planned.started, planned.chunks, done.finished, done.rows, done.chunks
FROM run, planned, done
"""


def _last_full_run(conn: Any, tables: list[str]) -> dict[str, Any] | None:
    row = conn.execute(_LAST_RUN, {"t": tables}).fetchone()
    if row is None:
        return None
    run_id, started, planned, finished, rows, done = row
    planned, done = int(planned or 0), int(done or 0)
    return {
        "run_id": run_id,
        "started": started.isoformat(),
        # The last chunk's commit; the plan's time when no chunk is in yet.
        "finished": (finished or started).isoformat(),
        "rows": int(rows or 0),
        "chunks": done,
        "planned_chunks": planned,
        # "incomplete" = still running, or failed/killed (resumable: a retry of the same run).
        "result": "complete" if done >= planned else "incomplete",
    }


def _last_verify(conn: Any, task: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT run_id, verified_at, level, ok, detail FROM zdtp.verify_log WHERE task = %s"
        " ORDER BY verified_at DESC LIMIT 1",
        (task,),
    ).fetchone()
    if row is None:
        return None
    run_id, at, level, ok, detail = row
    problems = (detail or {}).get("problems") or []
    return {
        "run_id": run_id,
        "finished": at.isoformat(),
        "level": level,
        "ok": bool(ok),
        "state": "success" if ok else "failed",
        "problem": problems[0] if problems else None,
        "source": "zdtp.verify_log",
    }


@dataclass(frozen=True)
class WalLimits:
    """The guard's thresholds; ``None`` disables that check."""

    warn_bytes: int | None = None
    fail_bytes: int | None = None
    max_stopped_seconds: float | None = None


def _mb(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def wal_verdict(
    slot: dict[str, Any], limits: WalLimits, *, stopped_since: dt.datetime | None = None
) -> tuple[str, list[str]]:
    """``("ok"|"warn"|"fail", messages)`` for one slot status (:func:`slot_status`).

    ``stopped_since`` is used when the server has no ``inactive_since`` (before PG 17).
    """
    name = slot["slot"]
    if not slot.get("exists"):
        return "ok", []
    if slot.get("wal_status") == "lost" or slot.get("invalidation_reason"):
        reason = slot.get("invalidation_reason") or "wal_status lost"
        return "fail", [
            f"replication slot {name} was invalidated ({reason}): the stream cannot resume;"
            " tear the sync down (`zdtp teardown`) and run its full+incremental DAG again"
        ]
    level, messages = "ok", []
    retained = slot.get("retained_wal_bytes") or 0
    advice = (
        f"the source keeps {_mb(retained)} of WAL for replication slot {name}"
        f"{'' if slot.get('active') else ' (no stream is reading it)'}"
    )
    fix = (
        "resume the stream (ResumeIncrementalSyncOperator / scale its Deployment to 1) so it"
        " catches up, or remove the sync with `zdtp teardown` to drop the slot"
    )
    if limits.fail_bytes is not None and retained > limits.fail_bytes:
        level = "fail"
        messages.append(f"{advice}, over the limit of {_mb(limits.fail_bytes)}: {fix}")
    elif limits.warn_bytes is not None and retained > limits.warn_bytes:
        level = "warn"
        messages.append(f"{advice}, over the warning level of {_mb(limits.warn_bytes)}")
    since = _parse_time(slot.get("inactive_since")) or (None if slot.get("active") else stopped_since)
    if limits.max_stopped_seconds is not None and not slot.get("active") and since is not None:
        now = _parse_time(slot.get("checked_at")) or dt.datetime.now(dt.UTC)
        stopped = (now - since).total_seconds()
        if stopped > limits.max_stopped_seconds:
            level = "warn" if level == "ok" else level
            messages.append(
                f"stream of slot {name} stopped for {stopped:.0f}s (since {since.isoformat()}),"
                f" longer than {limits.max_stopped_seconds:g}s: resume it or tear it down"
            )
    return level, messages


def _parse_time(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
