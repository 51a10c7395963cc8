"""What the CDC sessions pin beyond :data:`zdtp_worker.pg.session.SESSION_SETTINGS` so a value's
text form is the same where it is printed and where it is parsed.

``money`` prints and parses under ``lc_monetary``: in a text-mode stream the walsender prints it
(under the source's setting: database, role or server default) and the target session parses it
(under the target's). Two different locales (``1.234,56 €`` against ``$1,234.56``) misread the
amount or fail the apply. ``C`` exists on every server; under it both ends use ``$1,234.56``, and
the stored int64 round-trips. Pinned on the replication connection, the target session and the
source session that completes rows (:mod:`.refetch`); binary mode sends money as its int64 anyway.
(The full copy pins the same in its own sessions.)
"""

from __future__ import annotations

import psycopg

from zdtp_worker.pg.session import SESSION_SETTINGS

PINNED: dict[str, str] = {"lc_monetary": "C"}
REPLICATION_SETTINGS: dict[str, str] = {**SESSION_SETTINGS, **PINNED}


def pin(conn: psycopg.Connection) -> None:
    """Set :data:`PINNED` for the rest of the session (``SET`` outlives a rollback only once
    committed: in a non-autocommit session the caller commits, as with any first statement)."""
    for name, value in PINNED.items():
        conn.execute(f"SET {name} = '{value}'")
