"""Airflow connections → PostgreSQL DSNs for the worker's credentials Secret.

The DSN only ever goes into a Secret's data: never into a template field, XCom, env literal or
log line. Errors name the operator argument (``source_conn_id``...), not the password.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException, AirflowNotFoundException

from zdtp_provider.k8s.secret import SOURCE_KEY, TARGET_KEY

# libpq keywords worth carrying over from a connection's extras; anything else is Airflow's.
_LIBPQ_EXTRAS = frozenset(
    {
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "connect_timeout",
        "application_name",
        "options",
        "target_session_attrs",
        "keepalives",
        "keepalives_idle",
    }
)


def dsn_from_connection(conn) -> str:
    """``postgresql://user:pass@host:port/db?sslmode=...`` from an Airflow Connection."""
    if not conn.host:
        raise ValueError("has no host")
    userinfo = ""
    if conn.login:
        userinfo = quote(conn.login, safe="")
        if conn.password:
            userinfo += ":" + quote(conn.password, safe="")
        userinfo += "@"
    port = f":{conn.port}" if conn.port else ""
    database = quote(conn.schema or "", safe="")
    extras = {k: str(v) for k, v in (conn.extra_dejson or {}).items() if k in _LIBPQ_EXTRAS}
    query = f"?{urlencode(sorted(extras.items()))}" if extras else ""
    return f"postgresql://{userinfo}{conn.host}{port}/{database}{query}"


def resolve_dsns(*, source_conn_id: str | None, target_conn_id: str | None) -> dict[str, str]:
    """Secret data for the given connection ids; AirflowException naming the bad argument."""
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
            dsns[key] = dsn_from_connection(conn)
        except ValueError as exc:
            raise AirflowException(f"{field}: connection {conn_id!r} {exc}") from None
    return dsns
