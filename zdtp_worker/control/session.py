"""psycopg 3 sessions for control work and the CDC engine, with the shared session settings."""

from __future__ import annotations

import psycopg

from zdtp_worker.contract.errors import TemporaryError
from zdtp_worker.pg.errors import first_line
from zdtp_worker.pg.session import KEEPALIVES, libpq_options


def connect(
    dsn: str, *, role: str, application_name: str = "zdtp-control", autocommit: bool = True
) -> psycopg.Connection:
    """Open a session for ``role`` (``source``/``target``); an unreachable server is a TemporaryError."""
    try:
        return psycopg.connect(
            dsn,
            autocommit=autocommit,
            options=libpq_options(),
            application_name=application_name,
            connect_timeout=10,
            **KEEPALIVES,
        )
    except psycopg.OperationalError as exc:
        raise TemporaryError(f"{role}: cannot connect: {first_line(exc)}") from None
