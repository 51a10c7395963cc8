"""Is the stream's replication slot still whole? The checks that turn silent gaps into errors.

A logical slot remembers how far its consumer confirmed (``confirmed_flush_lsn``); the server
silently starts streaming there even when asked for an older position. So when the slot was
dropped and recreated (by a DBA, a failover before PG 17, a restore of the target), or moved by
``pg_replication_slot_advance``, the stream would just continue from "now" and every change in
between would be lost. The target knows better: ``zdtp.cdc_state`` holds the end LSN of the last
source transaction it applied, and zdtp confirms to the slot only what the target committed. So:

- state on the target and no slot: the slot is gone, so are its changes (exit 65);
- slot invalidated (``wal_status = 'lost'``, or ``invalidation_reason`` on PG 17+): its WAL was
  removed, ``max_slot_wal_keep_size`` exceeded or similar (exit 65, not a retry: it never heals);
- ``confirmed_flush_lsn`` past the applied LSN: "gap: N bytes of changes are gone" (exit 65).

The advice in each message is the one that works: re-run ``full+incremental``.

Also here: zdtp's namespace (slots are created only as ``zdtp_*`` and dropped only when zdtp's),
the source's ``max_slot_wal_keep_size`` (``-1``: an idle stream retains WAL without limit, warn),
and the WAL a slot retains (exported as a metric).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from zdtp_worker.contract.errors import ConfigError, DataError

log = logging.getLogger(__name__)

PREFIX = "zdtp_"
RERUN = (
    "resync: `zdtp teardown <sync file>` (removes the stream, its slot and state), then trigger the"
    " full+incremental DAG again to copy the tables and stream from a new slot"
)

# to_jsonb(s): the view's columns differ by major (invalidation_reason is 17+), read what exists.
_SLOT_SQL = """
SELECT to_jsonb(s), pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint,
       pg_wal_lsn_diff(s.confirmed_flush_lsn, '0/0')::bigint
FROM pg_replication_slots s WHERE s.slot_name = %s
"""


@dataclass(frozen=True)
class SlotState:
    name: str
    database: str | None
    plugin: str | None
    active_pid: int | None
    confirmed_flush: int  # LSN as an integer; 0 when unknown
    wal_status: str | None  # reserved / extended / unreserved / lost (PG 13+)
    invalidation_reason: str | None  # PG 17+
    retained_bytes: int | None  # WAL between restart_lsn and the server's current position
    safe_wal_size: int | None  # bytes left before invalidation (None: no limit)

    @property
    def invalidated(self) -> bool:
        return self.wal_status == "lost" or bool(self.invalidation_reason)


def is_zdtp_name(name: str) -> bool:
    return name.startswith(PREFIX)


def check_namespace(*, slot: str) -> None:
    """zdtp creates, advances and drops only slots in its own namespace."""
    if not is_zdtp_name(slot):
        raise ConfigError(
            f"replication slot name {slot!r} is outside zdtp's namespace: zdtp only uses slots named"
            f" {PREFIX}... (leave incremental.slot unset to derive one from the task)"
        )


def read_slot(conn: psycopg.Connection, slot: str) -> SlotState | None:
    row = conn.execute(_SLOT_SQL, (slot,)).fetchone()
    if row is None:
        return None
    data: dict[str, Any] = row[0]
    return SlotState(
        name=slot,
        database=data.get("database"),
        plugin=data.get("plugin"),
        active_pid=data.get("active_pid"),
        confirmed_flush=int(row[2] or 0),
        wal_status=data.get("wal_status"),
        invalidation_reason=data.get("invalidation_reason"),
        retained_bytes=None if row[1] is None else int(row[1]),
        safe_wal_size=data.get("safe_wal_size"),
    )


def _fmt(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def check_resume(state: SlotState | None, *, slot: str, applied_end_lsn: int, confirm_limit: int = 0) -> None:
    """Raise DataError when streaming from ``slot`` would skip changes the target never got.

    ``applied_end_lsn`` is the end LSN stored in ``zdtp.cdc_state`` (0: nothing applied yet, a
    first start: any slot position is fine, the copy before it defines the target).
    ``confirm_limit``: the heartbeat the last start emitted; the client library may have confirmed
    positions without changes up to it before the first message arrived.
    """
    if state is not None and state.invalidated:
        reason = state.invalidation_reason or f"wal_status {state.wal_status}"
        raise DataError(
            f"replication slot {slot} was invalidated ({reason}; the source removed WAL it still"
            f" needed, e.g. max_slot_wal_keep_size was exceeded): its changes are gone; {RERUN}"
        )
    if not applied_end_lsn:
        return
    if state is None:
        raise DataError(
            f"replication slot {slot} is missing but the target applied changes up to"
            f" {_fmt(applied_end_lsn)}: the slot was dropped, and with it every change since;"
            f" gap of unknown size; {RERUN}"
        )
    if state.confirmed_flush > max(applied_end_lsn, confirm_limit):
        gap = state.confirmed_flush - applied_end_lsn
        raise DataError(
            f"gap: {gap} bytes of changes are gone; {RERUN} (replication slot {slot} starts at"
            f" {_fmt(state.confirmed_flush)}, the target applied up to {_fmt(applied_end_lsn)}:"
            " the slot was recreated or advanced by someone else)"
        )


def wal_keep_size_mb(conn: psycopg.Connection) -> int:
    """The source's ``max_slot_wal_keep_size`` in MB (-1: unlimited)."""
    row = conn.execute(
        "SELECT setting::bigint FROM pg_settings WHERE name = 'max_slot_wal_keep_size'"
    ).fetchone()
    return int(row[0]) if row else -1


def warn_unlimited_retention(conn: psycopg.Connection, *, slot: str) -> bool:
    """Log a warning when the source lets slots retain WAL without limit; ``True`` if so."""
    if wal_keep_size_mb(conn) >= 0:
        return False
    log.warning(
        "source has max_slot_wal_keep_size = -1: while stream %s is stopped or slow, its slot retains"
        " WAL without limit and can fill the source's disk. Set a limit the stream can catch up"
        " within; zdtp reports an invalidated slot as a data error (metric"
        " zdtp_cdc_slot_retained_wal_bytes shows what it holds)",
        slot,
    )
    return True


def drop_own_slot(conn: psycopg.Connection, slot: str) -> bool:
    """Drop ``slot`` if it exists and is zdtp's; never touches other slots. ``True`` if dropped."""
    if not is_zdtp_name(slot):
        log.warning("not dropping replication slot %s: not created by zdtp", slot)
        return False
    if read_slot(conn, slot) is None:
        return False
    conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    log.info("dropped replication slot %s", slot)
    return True
