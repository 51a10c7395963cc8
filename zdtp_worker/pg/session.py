"""The session settings every worker connection uses, and DSN parsing for messages.

A row's text form must be identical on source and target, and identical to what the worker's
own SQL reads back: text-format COPY, the CDC stream (pgoutput sends text), the SQL checksums and
key-range literals all depend on it. So every session, whatever the driver, gets the same
settings from :data:`SESSION_SETTINGS`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

SESSION_SETTINGS: dict[str, str] = {
    "TimeZone": "UTC",
    # ISO output with year-month-day input order. Output in ISO style is YYYY-MM-DD whatever the
    # order part says; the order part decides how *input* is read. YMD matches what the worker
    # itself prints, so every date it reads back (COPY text from the source, key bounds cast as
    # '…'::date, values from the stream) parses the way it was printed; under MDY an input such as
    # '03-01-02' would be read month-first. (No space after the comma: libpq `options` splits on
    # spaces.)
    "DateStyle": "ISO,YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",  # float text round-trips exactly
    "bytea_output": "hex",
    "standard_conforming_strings": "on",  # quoting.literal relies on it
}

# TCP keepalives for long-lived psycopg sessions: a dead peer is noticed in ~20 s, not hours.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 3, "keepalives_count": 3}


def libpq_options(settings: dict[str, str] | None = None) -> str:
    """The settings as a libpq ``options`` string (``-c name=value …``) for psycopg/psycopg2."""
    return " ".join(f"-c {k}={v}" for k, v in (settings or SESSION_SETTINGS).items())


def parse_dsn(dsn: str) -> dict[str, Any]:
    """libpq parameters of a URI or ``key=value`` DSN.

    URIs are parsed here (the common case, and it keeps psycopg out of the worker's start-up);
    ``key=value`` strings go through libpq's own parser via psycopg.
    """
    if dsn.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(dsn)
        params: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if parts.hostname:
            params["host"] = unquote(parts.hostname)
        if parts.port:
            params["port"] = parts.port
        if parts.username:
            params["user"] = unquote(parts.username)
        if parts.password is not None:
            params["password"] = unquote(parts.password)
        if parts.path.strip("/"):
            params["dbname"] = unquote(parts.path.lstrip("/"))
        return params
    from psycopg.conninfo import conninfo_to_dict

    return dict(conninfo_to_dict(dsn))


def describe_target(dsn: str) -> str:
    """``user@host:port/db`` for messages: names the endpoint, never the password."""
    try:
        p = parse_dsn(dsn)
    except Exception:
        return "?"
    return f"{p.get('user', '')}@{p.get('host', 'localhost')}:{p.get('port', 5432)}/{p.get('dbname', '')}"
