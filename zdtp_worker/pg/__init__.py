"""PostgreSQL helpers shared by every part of the worker, independent of the driver.

- :mod:`.quoting`  identifiers and text literals in SQL;
- :mod:`.session`  the one set of session settings, keepalives, DSN parsing for messages;
- :mod:`.catalog`  catalog queries (primary-key lookup) with the driver's placeholder style;
- :mod:`.checksum` the order-independent count + checksum query both sides of a compare run;
- :mod:`.errors`   the one classifier from driver exceptions to :class:`WorkerError` exit codes;
- :mod:`.type_change` pure: which column type changes are safe widenings, which are lossy;
- :mod:`.target_fit` pure: can an existing target table take the source's rows, and how (COPY
  format, columns) — the full copy and the plan-time check share it.

Nothing here imports a driver at module level: asyncpg (full copy), psycopg 3 (control, CDC target)
and psycopg2 (CDC replication) all use these helpers.
"""
