"""The copy task's side of a queue fan-out: the run's queue name, and the check after its Job.

The enqueue itself runs in the worker image (``zdtp-worker full --enqueue``: chunk planning needs
the copy engine's driver); this module only reads the queue, with the Airflow side's drivers
(psycopg 3 for the PostgreSQL queue in the target, redis-py for Redis). A Job can end "complete"
and still leave work undone (a pod that gave up, an item leased by a pod that vanished), so the
task trusts the queue, not the Job: every item done, none ready, leased or abandoned.
"""

from __future__ import annotations

import hashlib

from zdtp_worker.contract.errors import DataError
from zdtp_worker.control.session import connect
from zdtp_worker.queue.base import Backend, OpenItem, QueueStatus

_PG_COUNTS = "SELECT count(*), count(*) FILTER (WHERE state = 'done') FROM zdtp.work_queue WHERE queue = %s"
_PG_OPEN = """
SELECT item_id, dedup_key,
       CASE WHEN state = 'leased' AND lease_expires < now() THEN 'abandoned' ELSE state END,
       lease_owner, attempts
FROM zdtp.work_queue WHERE queue = %s AND state <> 'done' ORDER BY item_id
"""


class QueueIncomplete(DataError):
    """The Job ended but the queue still holds items not done (named in the message)."""


def queue_name(task: str, run_id: str) -> str:
    """One queue per run of a sync task: a later run never works (or waits for) an earlier
    run's items, and a retry of the same run finds its own queue again."""
    return f"{task}.{hashlib.sha256(run_id.encode()).hexdigest()[:12]}"


def queue_status(
    *, backend: Backend, queue: str, target_dsn: str | None = None, url: str | None = None
) -> QueueStatus:
    if backend == "redis":
        return _redis_status(queue, url)
    if not target_dsn:
        raise ValueError("the postgres queue lives in the target: target_dsn is required")
    with connect(target_dsn, role="target", application_name="zdtp-queue-check") as conn:
        if conn.execute("SELECT to_regclass('zdtp.work_queue')").fetchone() == (None,):
            return QueueStatus(queue, 0, 0, ())
        total, done = conn.execute(_PG_COUNTS, (queue,)).fetchone()  # type: ignore[misc]
        rows = conn.execute(_PG_OPEN, (queue,)).fetchall()
    return QueueStatus(queue, int(total), int(done), tuple(OpenItem(*r) for r in rows))


def _redis_status(queue: str, url: str | None) -> QueueStatus:
    import redis

    from zdtp_worker.queue import redis_layout as lay

    if not url:
        raise ValueError("the redis queue needs its URL")
    with redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=10) as client:
        keys = lay.keys(queue, "names", "done", "leased", "owner", "attempts")
        return lay.parse_status(queue, client.eval(lay.STATUS, len(keys), *keys))  # type: ignore[arg-type]


def check_queue(
    *,
    backend: Backend,
    queue: str,
    expected: int | None = None,
    target_dsn: str | None = None,
    url: str | None = None,
) -> QueueStatus:
    """Raise :class:`QueueIncomplete` naming the items not done (or an empty queue when
    ``expected`` items were enqueued); return the status when every item is done."""
    status = queue_status(backend=backend, queue=queue, target_dsn=target_dsn, url=url)
    if status.open or (expected and status.total < expected):
        raise QueueIncomplete(status.describe())
    return status


__all__ = ["QueueIncomplete", "check_queue", "queue_name", "queue_status"]
