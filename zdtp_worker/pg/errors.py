"""The one mapping from database/driver errors to the worker's exit codes.

Works on exceptions of any of the worker's drivers without importing them: a server error
carries its SQLSTATE (``sqlstate`` on asyncpg and psycopg 3, ``pgcode`` on psycopg2), and a
driver error without one happened on the client side of the connection.

- 75 (retry is safe): connection, resource, operator-intervention and system classes;
  serialization failure, deadlock, lock timeout; any client-side connection failure.
- 78 (fix the input): bad password/authorization, unknown database, missing privilege.
- 65 (fix the data/schema): everything else the server rejected (data exceptions, integrity
  violations, undefined or incompatible objects, ...): a retry would fail the same way.
"""

from __future__ import annotations

from zdtp_worker.contract.errors import ConfigError, DataError, TemporaryError, WorkerError
from zdtp_worker.credentials import redact

TEMPORARY_CLASSES = ("08", "53", "57", "58")  # connection, resources, operator intervention, system
TEMPORARY_CODES = frozenset({"40001", "40P01", "55P03", "55006", "25P03"})  # serialization, deadlock, lock
CONFIG_CODES = frozenset({"28P01", "28000", "3D000", "42501"})  # auth, unknown database, privilege
_DRIVERS = ("asyncpg", "psycopg", "psycopg2")


def first_line(exc: BaseException) -> str:
    """The first line of an error message (server errors add DETAIL/HINT lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def sqlstate(exc: BaseException) -> str:
    """The SQLSTATE a server error carries, ``""`` for client-side errors."""
    return getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None) or ""


def _from_driver(exc: BaseException) -> bool:
    return type(exc).__module__.split(".", 1)[0] in _DRIVERS


def classify(exc: BaseException, *, role: str = "database", what: str = "") -> WorkerError:
    """Translate a driver/OS error into a WorkerError with a one-line, password-free message."""
    if isinstance(exc, WorkerError):
        return exc
    prefix = f"{role}{(' ' + what) if what else ''}"
    code = sqlstate(exc)
    if code:
        detail = f"{prefix}: {redact(first_line(exc))} (SQLSTATE {code})"
        if code in TEMPORARY_CODES or code[:2] in TEMPORARY_CLASSES:
            return TemporaryError(detail)
        if code in CONFIG_CODES:
            return ConfigError(detail)
        return DataError(detail)
    if isinstance(exc, (ConnectionError, OSError, TimeoutError)) or _from_driver(exc):
        return TemporaryError(f"{prefix}: connection lost: {redact(str(exc)) or type(exc).__name__}")
    return DataError(f"{prefix}: {type(exc).__name__}: {redact(str(exc))}")
