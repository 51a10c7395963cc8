"""Full-sync engine: a resumable, chunked, binary-COPY snapshot copy PostgreSQL → PostgreSQL.

Layers, low to high (each module one concern):

- ``session``     asyncpg sessions (shared settings from ``zdtp_worker.pg``), the run's snapshot
- ``catalog``     what a table looks like (columns, types, primary key, size estimates)
- ``schema``      create or check the target table; staging tables and the swap for ``swap`` mode
- ``chunking``    split a table into bounded primary-key ranges (chunks)
- ``sqlparts``    WHERE clauses for a chunk's key range, shared by copy, delete and verify
- ``checkpoints`` the ``zdtp`` schema in the target: plans and finished chunks per run
- ``queue``       the work queue in the target's ``zdtp`` schema (SKIP LOCKED + leases)
- ``copy``        the hot path: COPY bytes from source to target without decoding rows
- ``verify``      count + checksum of one key range (query in ``zdtp_worker.pg.checksum``)
- ``progress``    JSON log lines (events and periodic progress), the run's current step
- ``postgres``    PostgreSQL behind ``zdtp_worker.drivers``: ``open_pair`` → snapshot reader + target writer
- ``chunk``       one chunk, one transaction, through the ``zdtp_worker.drivers`` Protocols
- ``tables``      a run over the spec's tables: check, prepare, copy chunks, swap
- ``queue_run``   a run over a work queue; ``enqueue_chunks`` fills one
- ``main``        the entry points: ``run_full`` (plain function) and ``run_full_cli``

Database errors become exit codes in ``zdtp_worker.pg.errors`` (one classifier for all drivers).

Public helpers for other packages: :func:`run_full`, :func:`ensure_target_table`,
:func:`enqueue_chunks`. Nothing here imports Airflow.
"""

from __future__ import annotations

from zdtp_worker.full.main import ensure_target_table, run_full, run_full_async
from zdtp_worker.full.queue_run import enqueue_chunks

__all__ = ["enqueue_chunks", "ensure_target_table", "run_full", "run_full_async"]
