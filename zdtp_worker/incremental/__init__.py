"""Incremental sync (CDC): stream PostgreSQL logical replication (``pgoutput``) into the target.

Layers, low to high:

- ``pgoutput``    pure decoder of pgoutput protocol v1 messages (no I/O).
- ``batch``       in-memory batch: per-table compaction of changes by primary key.
- ``replication`` the psycopg2 replication connection: slot with exported snapshot, START_REPLICATION.
- ``staging``     pure SQL of applying a batch (COPY into a staging table, then DELETE / upsert /
                  partial UPDATE) and the staging COPY text.
- ``target``      target connection: lease (advisory lock), ``zdtp.cdc_state``, table DDL, apply.
- ``relations``   source relation → target shape, schema checks, adding new columns.
- ``applier``     the thread that owns the target connection while streaming.
- ``health``      /healthz, /readyz and Prometheus /metrics over stdlib ``http.server``.
- ``loop``        the main loop: read, decode, batch, apply, commit state, send feedback.
- ``stream``      start-up: pre-flight, lease, state, target tables, publication/slot, then the loop.
- ``main``        CLI entry: wire everything, optional initial snapshot hand-off, exit codes.

Source checks, publication/slot set-up and slot/publication names live in
:mod:`zdtp_worker.control` (psycopg 3), shared with the Airflow side.

Exit codes (see ``zdtp_worker.contract.errors``):

- 0  stopped by SIGTERM/SIGINT after committing (or rolling back) the current batch.
- 65 data/schema problem: a published table without a primary key, an incompatible source
     schema change (column type changed, primary key dropped or changed), target PK mismatch.
- 75 temporary: connection lost, slot busy for too long. Safe to restart (exactly-once holds).
- 78 configuration: ``wal_level`` is not ``logical``, the source role lacks REPLICATION, a spec
     table does not exist on the source.

Exactly-once in effect: every target transaction that applies changes also writes the commit LSN
of the last source transaction it contains into ``zdtp.cdc_state``; on start the worker skips every
source transaction whose commit LSN is <= that value, whatever the slot replays. Replication
feedback (flush LSN) is sent only after the target commit.
"""
