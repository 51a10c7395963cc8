"""Airflow connections → libpq connection strings for the worker's credentials Secret.

Only ``postgres`` connections are accepted: anything else fails before a Kubernetes object is
written, naming the connection id and its type. The string is built by libpq's own rules
(``psycopg.conninfo.make_conninfo``: quoting, IPv6 hosts) from the connection's fields plus every
libpq parameter found in its extras (``sslmode``, ``sslrootcert``, ``options``,
``connect_timeout``...); Airflow-only extras (``cursor``, ``iam``...) are left out.

Certificate files: a connection's ``sslrootcert``/``sslcert``/``sslkey``/``sslcrl`` are paths on
the Airflow side. When a TLS Secret is mounted into worker pods (``tls_dir``), the pod's string
points at the same file *name* inside the mount, so one Secret made from the same files
(``kubectl create secret generic pg-tls --from-file=ca.crt``) serves every worker.

The result only ever goes into a Secret's data: never a template field, XCom, env literal or log
line. Errors name the operator argument (``source_conn_id``...), never the password.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import PurePosixPath
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException, AirflowNotFoundException

from zdtp_provider.k8s.secret import SOURCE_KEY, TARGET_KEY

# ``postgresql`` is what a ``postgresql://`` URI's scheme becomes when a connection is created
# from code without Airflow's normalisation; it is the same type.
POSTGRES_CONN_TYPES = frozenset({"postgres", "postgresql"})
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# Parameters naming files read by the client: re-pointed into the mounted TLS Secret in pods.
FILE_PARAMS = ("sslrootcert", "sslcert", "sslkey", "sslcrl")
# Taken from the connection's own fields; the same keys in extras would contradict them.
_FIELDS = frozenset({"host", "port", "dbname", "user", "password"})


@cache
def libpq_keywords() -> frozenset[str]:
    """Every keyword the installed libpq accepts (asked of libpq, not hard-coded)."""
    from psycopg import pq

    return frozenset(d.keyword.decode() for d in pq.Conninfo.get_defaults())


def check_postgres(conn: Any) -> None:
    """ValueError unless ``conn`` is a PostgreSQL connection with a host."""
    conn_type = (getattr(conn, "conn_type", None) or "").lower()
    if conn_type not in POSTGRES_CONN_TYPES:
        raise ValueError(f"has conn_type {conn_type or '(none)'!r}; zdtp needs a 'postgres' connection")
    if not conn.host:
        raise ValueError("has no host")


def libpq_params(
    conn: Any, *, sslmode: str | None = None, tls_dir: str | None = None
) -> dict[str, str | int]:
    """libpq keyword → value for ``conn``; ``sslmode`` overrides the connection's."""
    check_postgres(conn)
    host = conn.host.strip()
    if host.startswith("[") and host.endswith("]"):  # a bracketed IPv6 literal typed as in a URI
        host = host[1:-1]
    params: dict[str, str | int] = {"host": host}
    if conn.port:
        params["port"] = int(conn.port)
    if conn.schema:
        params["dbname"] = conn.schema
    if conn.login:
        params["user"] = conn.login
    if conn.password:
        params["password"] = conn.password
    extras: Mapping[str, Any] = conn.extra_dejson or {}
    known = libpq_keywords()
    for key in sorted(extras):
        value = extras[key]
        if key in known and key not in _FIELDS and value is not None and value != "":
            params[key] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    if sslmode is not None:
        if sslmode not in SSLMODES:
            raise ValueError(f"sslmode {sslmode!r} is not one of {', '.join(SSLMODES)}")
        params["sslmode"] = sslmode
    if tls_dir is not None:
        for key in FILE_PARAMS:
            if key in params:
                params[key] = f"{tls_dir}/{PurePosixPath(str(params[key])).name}"
    return params


def dsn_from_connection(conn: Any, *, sslmode: str | None = None, tls_dir: str | None = None) -> str:
    """A libpq ``key=value`` connection string for ``conn`` (see the module docstring)."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import make_conninfo

    params = libpq_params(conn, sslmode=sslmode, tls_dir=tls_dir)
    try:
        return make_conninfo("", **params)
    except ProgrammingError as exc:  # a value libpq rejects; the message names the keyword only
        raise ValueError(f"is not a valid libpq connection: {str(exc).splitlines()[0]}") from None


def resolve_dsns(
    *,
    source_conn_id: str | None,
    target_conn_id: str | None,
    sslmode: str | None = None,
    tls_dir: str | None = None,
) -> dict[str, str]:
    """Secret data for the given connection ids; AirflowException naming the bad argument.

    Both connections are checked before anything is returned, so a caller that resolves
    credentials first writes nothing to Kubernetes when either is wrong.
    """
    dsns: dict[str, str] = {}
    for field, conn_id, key in (
        ("source_conn_id", source_conn_id, SOURCE_KEY),
        ("target_conn_id", target_conn_id, TARGET_KEY),
    ):
        if not conn_id:
            continue
        try:
            conn = BaseHook.get_connection(conn_id)
        except AirflowNotFoundException:
            raise AirflowException(f"{field}: connection {conn_id!r} is not defined") from None
        try:
            dsns[key] = dsn_from_connection(conn, sslmode=sslmode, tls_dir=tls_dir)
        except ValueError as exc:
            raise AirflowException(f"{field}: connection {conn_id!r} {exc}") from None
    return dsns
