"""An Airflow ``redis`` connection → the Redis URL of a queue fan-out's work queue.

``queue_backend: redis`` names the server by ``queue_conn_id``. The URL is a credential like a
DSN: it only ever goes into the task's credentials Secret (key ``queue-dsn``, read by the worker
through ``ZDTP_QUEUE_DSN_FILE``) and to the Airflow side's queue check in memory — never a
template field, XCom, env literal or log line. Any other connection type fails before a
Kubernetes object is written, naming ``queue_conn_id`` and the type, never the password.

Carried from the connection: host, port, login/password, and the extras ``db`` (the logical
database, as Airflow's RedisHook reads it) and ``ssl`` (``rediss://``). Certificate-file extras
(``ssl_ca_certs``...) name files on the Airflow side that pods do not have, so they are refused
rather than silently dropped.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException, AirflowNotFoundException

REDIS_CONN_TYPE = "redis"
DEFAULT_PORT = 6379
_FILE_EXTRAS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_ca_path", "ssl_cert_file")


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def redis_url(conn: Any) -> str:
    """``redis[s]://[user]:[password]@host:port/db`` for ``conn``; ValueError naming what is wrong."""
    conn_type = (getattr(conn, "conn_type", None) or "").lower()
    if conn_type != REDIS_CONN_TYPE:
        raise ValueError(
            f"has conn_type {conn_type or '(none)'!r}; queue_backend redis needs a 'redis' connection"
        )
    host = (conn.host or "").strip()
    if not host:
        raise ValueError("has no host")
    extras = conn.extra_dejson or {}
    if files := sorted(k for k in _FILE_EXTRAS if extras.get(k)):
        raise ValueError(f"extra {files[0]!r} names a file on the Airflow side; worker pods cannot read it")
    try:
        db = int(extras.get("db", 0) or 0)
    except (TypeError, ValueError):
        raise ValueError("extra 'db' must be a Redis database number") from None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    auth = ""
    if conn.login or conn.password:
        auth = f"{quote(conn.login or '', safe='')}:{quote(conn.password or '', safe='')}@"
    scheme = "rediss" if _truthy(extras.get("ssl", False)) else "redis"
    return f"{scheme}://{auth}{host}:{int(conn.port or DEFAULT_PORT)}/{db}"


def resolve_queue_url(queue_conn_id: str) -> str:
    """The Redis URL of Airflow connection ``queue_conn_id``; AirflowException naming the argument."""
    try:
        conn = BaseHook.get_connection(queue_conn_id)
    except AirflowNotFoundException:
        raise AirflowException(f"queue_conn_id: connection {queue_conn_id!r} is not defined") from None
    try:
        return redis_url(conn)
    except ValueError as exc:
        raise AirflowException(f"queue_conn_id: connection {queue_conn_id!r} {exc}") from None


__all__ = ["redis_url", "resolve_queue_url"]
