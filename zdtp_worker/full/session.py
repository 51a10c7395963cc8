"""asyncpg sessions of the full-sync engine: connect, open the run's snapshot, close.

asyncpg is used throughout because its COPY passthrough is the fastest path measured here
(0.9-1.24M rows/s). DSNs may be URIs or libpq ``key=value`` strings (psycopg parses both; asyncpg
only takes URIs), so they are parsed once and passed as keyword arguments. Every session gets
the shared settings of :mod:`zdtp_worker.pg.session`.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any
from urllib.parse import urlencode

import asyncpg

from zdtp_worker.contract.errors import ConfigError, TemporaryError
from zdtp_worker.contract.spec import WorkerSpec
from zdtp_worker.credentials import redact
from zdtp_worker.pg.errors import classify
from zdtp_worker.pg.quoting import literal
from zdtp_worker.pg.session import SESSION_SETTINGS, describe_target, parse_dsn

_SSL_FILES = ("sslrootcert", "sslcert", "sslkey", "sslcrl", "sslpassword")
# lc_monetary: money's text form (symbol, separators, fraction digits) follows it; a text COPY
# prints under the source session's and parses under the target session's, so both sessions use
# the always-present "C" and the stored amount round-trips whatever the servers' defaults are
# (binary COPY sends the stored integer and never depended on it).
SERVER_SETTINGS = {**SESSION_SETTINGS, "lc_monetary": "C", "application_name": "zdtp-worker-full"}
# Row-level security on the source would silently hand a copy only the rows the role may see;
# with row_security off PostgreSQL raises an error instead (tables.check_tables refuses such a
# table up front, this guards a policy added while the copy runs).
SOURCE_SETTINGS = {"row_security": "off"}


def _connect_kwargs(dsn: str, role: str) -> dict[str, Any]:
    try:
        params = parse_dsn(dsn)
    except Exception:
        raise ConfigError(f"{role} DSN is malformed") from None
    kwargs: dict[str, Any] = {}
    for key, target in (("host", "host"), ("user", "user"), ("password", "password"), ("dbname", "database")):
        if params.get(key):
            kwargs[target] = params[key]
    if params.get("port"):
        try:
            kwargs["port"] = int(str(params["port"]).split(",")[0])
        except ValueError:
            raise ConfigError(f"{role} DSN: port {params['port']!r} is not a number") from None
    if params.get("sslmode"):
        kwargs["ssl"] = params["sslmode"]
    # asyncpg reads certificate files (sslrootcert...) only from a URI's query; the keyword
    # arguments above take precedence over anything else a URI would say.
    files = {k: str(params[k]) for k in _SSL_FILES if params.get(k)}
    if files:
        kwargs["dsn"] = "postgresql://?" + urlencode(files)
    return kwargs


async def connect(dsn: str, *, role: str, timeout: float = 15.0) -> asyncpg.Connection:
    """Open a session for ``role`` (``source``/``target``) or raise a WorkerError naming it."""
    kwargs = _connect_kwargs(dsn, role)
    where = describe_target(dsn)
    try:
        return await asyncpg.connect(
            **kwargs,
            timeout=timeout,
            server_settings={**SERVER_SETTINGS, **(SOURCE_SETTINGS if role == "source" else {})},
            statement_cache_size=0,
        )
    except asyncpg.InvalidPasswordError:
        raise ConfigError(
            f"{role}: password authentication failed for role {kwargs.get('user', '?')!r} ({where})"
        ) from None
    except asyncpg.InvalidAuthorizationSpecificationError as exc:
        raise ConfigError(f"{role}: not authorized ({where}): {redact(exc.args[0])}") from None
    except asyncpg.InvalidCatalogNameError:
        raise ConfigError(
            f"{role}: database {kwargs.get('database', '?')!r} does not exist ({where})"
        ) from None
    except (OSError, socket.gaierror, TimeoutError, asyncpg.CannotConnectNowError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise TemporaryError(f"{role}: cannot reach {where}: {reason}") from None
    except asyncpg.PostgresError as exc:
        raise classify(exc, role=role) from None


async def open_source_snapshot(src: asyncpg.Connection, snapshot: str | None) -> None:
    """One REPEATABLE READ transaction for the whole run: every chunk reads the same snapshot."""
    await src.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    if snapshot:
        try:
            await src.execute(f"SET TRANSACTION SNAPSHOT {literal(snapshot)}")
        except asyncpg.PostgresError as exc:
            raise ConfigError(f"full.snapshot {snapshot!r}: {str(exc).splitlines()[0]}") from None


async def connect_pair(
    source_dsn: str, target_dsn: str, *, snapshot: str | None
) -> tuple[asyncpg.Connection, asyncpg.Connection]:
    src = await connect(source_dsn, role="source")
    try:
        tgt = await connect(target_dsn, role="target")
    except BaseException:
        await src.close()
        raise
    try:
        # Safe: a chunk's data and its checkpoint commit together, so a commit lost in a server
        # crash loses both and the chunk is simply redone.
        await tgt.execute("SET synchronous_commit = off")
        await tgt.execute("SET lock_timeout = '60s'")
        await open_source_snapshot(src, snapshot)
    except BaseException:
        await close(src, tgt)
        raise
    return src, tgt


async def close(*conns: asyncpg.Connection) -> None:
    for conn in conns:
        try:
            await asyncio.wait_for(conn.close(), timeout=5)
        except Exception:
            conn.terminate()


def worker_id(spec: WorkerSpec) -> str:
    return f"{spec.worker}/{socket.gethostname()}/{os.getpid()}"
