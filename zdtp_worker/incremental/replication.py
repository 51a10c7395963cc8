"""The replication connection of a CDC stream (psycopg2: psycopg 3 has no replication API).

Connect, create the slot with an exported snapshot (initial-snapshot hand-off), and start
streaming ``pgoutput`` from an LSN. Checks, publication and ordinary slot creation run on a
psycopg 3 session instead (:mod:`zdtp_worker.control.stream_setup`).
"""

from __future__ import annotations

import time

import psycopg2
import psycopg2.errors
from psycopg2.extras import REPLICATION_LOGICAL, LogicalReplicationConnection, ReplicationCursor

from zdtp_worker.contract.errors import ConfigError, TemporaryError
from zdtp_worker.incremental.pgoutput import format_lsn, parse_lsn
from zdtp_worker.incremental.text_form import REPLICATION_SETTINGS
from zdtp_worker.pg.errors import first_line
from zdtp_worker.pg.quoting import ident
from zdtp_worker.pg.session import KEEPALIVES, libpq_options


def replication_connect(dsn: str) -> LogicalReplicationConnection:
    try:
        return psycopg2.connect(
            dsn,
            connection_factory=LogicalReplicationConnection,
            options=libpq_options(REPLICATION_SETTINGS),  # lc_monetary too: see .text_form
            application_name="zdtp-cdc",
            connect_timeout=10,
            **KEEPALIVES,
        )
    except psycopg2.OperationalError as exc:
        raise TemporaryError(f"source replication connection failed: {first_line(exc)}") from None


def create_slot_exporting_snapshot(cur: ReplicationCursor, slot: str) -> tuple[int, str]:
    """Create the slot on the replication connection; return (consistent point, snapshot name).

    The snapshot stays importable (``SET TRANSACTION SNAPSHOT``) until the next command on this
    connection, so the caller copies first and only then starts replication on it.
    """
    cur.execute(f"CREATE_REPLICATION_SLOT {ident(slot)} LOGICAL pgoutput EXPORT_SNAPSHOT")
    row = cur.fetchone()
    assert row is not None
    return parse_lsn(row[1]), row[2]


def start_replication(
    cur: ReplicationCursor,
    *,
    slot: str,
    publication: str,
    start_lsn: int,
    wait_seconds: float = 30.0,
    messages: bool = False,
    binary: bool = False,
) -> None:
    """``START_REPLICATION``; waits while a previous holder's walsender still has the slot.

    ``messages`` (PG 14+) also streams logical decoding messages: the stream's heartbeats
    (``pg_logical_emit_message``) then arrive as positions it can store and confirm.
    ``binary`` (PG 14+): values in their send format (see :mod:`.binary_mode`).
    """
    deadline = time.monotonic() + wait_seconds
    options = {"proto_version": "1", "publication_names": publication}
    if messages:
        options["messages"] = "true"
    if binary:
        options["binary"] = "true"
    while True:
        try:
            cur.start_replication(
                slot_name=slot,
                slot_type=REPLICATION_LOGICAL,
                start_lsn=format_lsn(start_lsn),
                decode=False,
                options=options,
                status_interval=1,
            )
            return
        except psycopg2.errors.ObjectInUse as exc:
            if time.monotonic() > deadline:
                raise TemporaryError(f"replication slot {slot} stays busy: {first_line(exc)}") from None
            # Same connection can retry: the failed command did not start streaming.
            time.sleep(0.5)
        except psycopg2.errors.UndefinedObject as exc:
            raise ConfigError(f"replication slot or publication missing: {first_line(exc)}") from None
