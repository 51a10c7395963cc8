"""Database work the Airflow side runs itself, through one declared driver (psycopg 3).

The provider may import this package and :mod:`zdtp_worker.contract`, nothing else of the worker.
It depends on psycopg 3 (a base dependency of the distribution), the contract and the driver-free
:mod:`zdtp_worker.pg` helpers; never on asyncpg or psycopg2, which only the worker image needs.

- :mod:`.session`      psycopg 3 sessions with the worker's session settings;
- :mod:`.catalog`      table structure (columns, types, primary key) and type names;
- :mod:`.names`        replication slot, publication and stream names of a sync task;
- :mod:`.stream_setup` CDC pre-flight checks, publication and slot (create, inspect, drop);
- :mod:`.publication`  the stream's publication (via partition roots) and its membership check;
- :mod:`.replica_identity` which tables CDC can stream, from their replica identity;
- :mod:`.slot_guard`   is the slot still whole (gap, invalidated, vanished) before streaming;
- :mod:`.verify`       a run's verify from its per-chunk records (target only: a live source
  cannot fail it), and the count/checksum comparison of quiet tables, source vs target;
- :mod:`.row_checksum` the checksum SQL both sides of a chunk share, and plan coverage checks;
- :mod:`.verify_log`   ``zdtp.verify_log``: one row per verify, read by ``zdtp status``;
- :mod:`.target_check` plan time: can existing target tables take the source's rows (no lossy column);
- :mod:`.queue`        a queue fan-out's queue name per run and the check after its Job.
- :mod:`.teardown`     drop a task's slot/publication and state rows; find leftovers of gone tasks;
- :mod:`.status`       slot (retained WAL, stopped since), applied position, last full run; WAL guard.

The CDC worker reuses the same functions at start-up, so the checks Airflow runs before a copy
and the ones the worker runs before streaming cannot drift apart. Why this runs on the Airflow
side rather than as worker pods: ``docs/concepts.md``.
"""
