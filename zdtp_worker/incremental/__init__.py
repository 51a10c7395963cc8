"""Incremental sync (CDC): stream PostgreSQL logical replication (``pgoutput``) into the target.

Layers, low to high:

- ``names``     slot / publication / stream names derived from the sync task.
- ``pgoutput``  pure decoder of pgoutput protocol v1 messages (no I/O).
- ``batch``     in-memory batch: per-table compaction of changes by primary key.
- ``source``    checks and setup on the source: wal_level, privileges, tables, publication, slot.
- ``target``    target connection: lease (advisory lock), ``zdtp.cdc_state``, table DDL, applying
                a batch (COPY into a staging table, then DELETE / upsert / partial UPDATE).
- ``health``    /healthz, /readyz and Prometheus /metrics over stdlib ``http.server``.
- ``stream``    the main loop: read, decode, batch, apply, commit state, send feedback.
- ``main``      CLI entry: wire everything, optional initial snapshot hand-off, exit codes.

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
