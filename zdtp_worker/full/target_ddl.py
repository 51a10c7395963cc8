"""Create the target table so that it reproduces the source, and move its sequences.

The rules and DDL for creating it live in :mod:`zdtp_worker.pg.creatable` (driver-free, so
``zdtp plan`` with a target runs the very same checks: ``check_creatable``, ``trial_create``);
they are re-exported here for the engine. This module adds the copy's last step:

- :func:`copy_sequences` — at the end of a copy, move every sequence the table's columns use so
  the target hands out no value before the source's next one (never backwards: a target that
  already handed out ids keeps them), so a cut-over to the target does not reuse ids.

Callers hold the per-table advisory lock (see ``schema._lock_name``) around create/build.
"""

from __future__ import annotations

import asyncpg

from zdtp_worker.contract.errors import DataError
from zdtp_worker.contract.identifiers import render_qualified, sql_qualified
from zdtp_worker.contract.spec import TableName
from zdtp_worker.pg.creatable import build_keys, check_creatable, create_table, trial_create
from zdtp_worker.pg.shape import TableShape

__all__ = ["build_keys", "check_creatable", "copy_sequences", "create_table", "trial_create"]


async def _target_sequence(conn: asyncpg.Connection, target: TableName, column: str | None) -> str | None:
    """The target's sequence behind ``column`` (quoted SQL name), if it has one."""
    if column is None:
        return None
    # The column argument is taken literally (no case folding, no quotes).
    return await conn.fetchval(
        "SELECT pg_get_serial_sequence($1, $2)", sql_qualified(target.schema_, target.name), column
    )


def _next_value(last_value: int, is_called: bool, increment: int) -> int:
    """The value ``nextval`` hands out next: ``last_value`` itself while the sequence is "not
    called" (new, or after ``setval(.., false)`` / ``RESTART``), else one increment further."""
    return last_value + increment if is_called else last_value


async def copy_sequences(
    source: asyncpg.Connection, target_conn: asyncpg.Connection, shape: TableShape, *, target: TableName
) -> dict[str, int]:
    """Move each of the table's sequences on the target so it hands out no value before the
    source's next one.

    Sequences are not transactional: reading one gives its current position (at or beyond the
    copy's snapshot), which is what a cut-over needs. The position is copied with its
    ``is_called`` flag: a source sequence restarted (``ALTER … RESTART WITH 1000``,
    ``setval(s, 1000, false)``) hands out 1000 next, and so must the target (before, a "not
    called" source was skipped and the target handed out its START again: ids the copied rows
    hold). A target sequence already further along (ids handed out on the target) is left there.
    Returns {source sequence: last_value now on the target}.
    """
    moved: dict[str, int] = {}
    for seq in shape.sequences:
        src = await source.fetchrow(f"SELECT last_value, is_called FROM {seq.qualified}")
        # An owned sequence may have another name on the target (a table created by someone else).
        tgt_seq = await _target_sequence(target_conn, target, seq.column) or seq.qualified
        if await target_conn.fetchval("SELECT to_regclass($1)", tgt_seq) is None:
            if not src["is_called"]:
                continue  # never used on the source and nothing to move: no target sequence needed
            raise DataError(
                f"target table {target}: sequence {render_qualified(seq.schema, seq.name)} "
                "used by its defaults does not exist on the target"
            )
        tgt = await target_conn.fetchrow(f"SELECT last_value, is_called FROM {tgt_seq}")
        src_next = _next_value(int(src["last_value"]), src["is_called"], seq.increment)
        tgt_next = _next_value(int(tgt["last_value"]), tgt["is_called"], seq.increment)
        if (tgt_next - src_next) * seq.increment >= 0:
            value = int(tgt["last_value"])  # the target hands out the same or later values already
        else:
            value = int(src["last_value"])
            await target_conn.execute(
                "SELECT setval($1::regclass, $2::bigint, $3::boolean)", tgt_seq, value, src["is_called"]
            )
        moved[render_qualified(seq.schema, seq.name)] = value
    return moved
