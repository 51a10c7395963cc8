"""Work-queue backends for the queue fan-outs (``queue``: a pod per item, ``queue-drain``: pods
drain the queue until it is empty).

- ``base``         the contract every backend keeps (:class:`~.base.QueueBackend`), items, status
- ``pg_queue``     PostgreSQL: ``zdtp.work_queue`` in the target, done in the chunk's transaction
- ``redis_queue``  Redis: Lua-scripted leases on the server clock, fenced in the target
- ``redis_layout`` the Redis keys and Lua scripts (driver-free: the Airflow side reads status too)
- ``opener``       :func:`~.opener.open_queue` picks one from the spec's ``full.queue_backend``; the
                   Redis URL (a credential) comes like a DSN, from ``ZDTP_QUEUE_DSN_FILE`` (a
                   mounted Secret) or ``ZDTP_QUEUE_DSN``.

This package's ``__init__``, ``base`` and ``redis_layout`` import no database driver, so
:mod:`zdtp_worker.control.queue` (the Airflow side) may use them.
"""

from __future__ import annotations

from zdtp_worker.queue.base import BACKENDS, Backend, Item, OpenItem, QueueBackend, QueueStatus

__all__ = ["BACKENDS", "Backend", "Item", "OpenItem", "QueueBackend", "QueueStatus"]
