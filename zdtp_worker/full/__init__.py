"""Full-sync engine: a resumable, chunked, binary-COPY snapshot copy PostgreSQL → PostgreSQL.

Layers, low to high (each module one concern):

- ``pg``          connections (asyncpg, fixed session settings) and database-error → exit-code mapping
- ``catalog``     what a table looks like (columns, types, primary key, size estimates)
- ``schema``      create or check the target table; staging tables and the swap for ``swap`` mode
- ``planner``     split a table into bounded primary-key ranges (chunks)
- ``sqlparts``    WHERE clauses for a chunk's key range, shared by copy, delete and verify
- ``checkpoints`` the ``zdtp`` schema in the target: plans and finished chunks per run
- ``queue``       the work queue in the target's ``zdtp`` schema (SKIP LOCKED + leases)
- ``copy``        the hot path: COPY bytes from source to target without decoding rows
- ``verify``      order-independent count + checksum of a key range, computed in SQL
- ``progress``    JSON log lines (events and periodic progress)
- ``engine``      one chunk transaction and one table, built from the above
- ``main``        the entry points: ``run_full`` (plain function) and ``run_full_cli``

Public helpers for other packages: :func:`run_full`, :func:`ensure_target_table`,
:func:`enqueue_chunks`. Nothing here imports Airflow.
"""

from __future__ import annotations

from zdtp_worker.full.main import enqueue_chunks, ensure_target_table, run_full, run_full_async

__all__ = ["enqueue_chunks", "ensure_target_table", "run_full", "run_full_async"]
