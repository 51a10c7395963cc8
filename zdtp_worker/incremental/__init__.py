"""Incremental sync (CDC): stream PostgreSQL logical replication (``pgoutput``) into the target.

Layers, low to high:

- ``pgoutput``    pure decoder of pgoutput protocol v1 messages (no I/O).
- ``batch``       in-memory batch: per-table compaction of changes by primary key.
- ``replication`` the psycopg2 replication connection: slot with exported snapshot, START_REPLICATION.
- ``staging``     pure SQL of applying a batch (COPY into a staging table, then DELETE / upsert /
                  partial UPDATE) and the staging COPY text.
- ``target_session`` the target connection, its lease (advisory lock) and ``zdtp.cdc_state`` (LSNs).
- ``target_apply`` writing a batch into the open target transaction.
- ``target``      the target object (session + apply) and its tables: read, create, shape.
- ``refetch``     reads a row by key from the source when the target cannot supply an unchanged
                  TOAST value (key changes; rows a ``full+incremental`` copy did not have).
- ``type_change`` pure: which column type changes are safe widenings, which are lossy.
- ``column_sync`` the target follows the source's columns (ADD with the source's default for old
                  rows, backfill by key, DROP/RENAME keep data, widenings, generated columns).
- ``rowwise``     whole-row apply of keyless ``REPLICA IDENTITY FULL`` tables, in stream order.
- ``sequences``   target sequences kept at or ahead of the source's.
- ``source_watch`` periodic: slot health and retained WAL, tables matching include not streamed.
- ``housekeeping`` the periodic jobs beside the loop: source watch, sequences, heartbeats.
- ``relations``   source relation → target shape and key, schema checks via ``column_sync``.
- ``applier``     the thread that owns the target connection while streaming.
- ``health``      /healthz, /readyz and Prometheus /metrics over stdlib ``http.server``.
- ``dispatch``    each decoded message's effect on the batch being built.
- ``committer``   flush to the applier, commit with the LSN, feedback to the slot, stop, lag.
- ``loop``        the main loop: read, hot path, hand the rest to ``dispatch``/``committer``.
- ``stream``      start-up: pre-flight, lease, state, target tables, publication/slot, then the loop.
- ``initial_copy`` the ``--initial-snapshot`` copy: each table replaced in one target transaction.
- ``main``        CLI entry: wire everything, optional initial snapshot hand-off, exit codes.

Source checks, publication/slot set-up and slot/publication names live in
:mod:`zdtp_worker.control` (psycopg 3), shared with the Airflow side.

Exit codes (see ``zdtp_worker.contract.errors``):

- 0  stopped by SIGTERM/SIGINT after committing (or rolling back) the current batch.
- 65 data/schema problem: a table without a usable replica identity, a lossy source column type
     change (unless opted in), primary key dropped or changed, target key mismatch; the slot lost
     changes (gap, dropped, invalidated): re-run full+incremental (see docs/cdc-safety.md).
- 75 temporary: connection lost, slot busy for too long. Safe to restart (exactly-once holds).
- 78 configuration: ``wal_level`` is not ``logical``, the source role lacks REPLICATION, a spec
     table does not exist on the source, a slot name outside ``zdtp_*``, someone else's
     publication that does not fit (never altered).

Exactly-once in effect: every target transaction that applies changes also writes the commit LSN
of the last source transaction it contains into ``zdtp.cdc_state``; on start the worker skips every
source transaction whose commit LSN is <= that value, whatever the slot replays. Replication
feedback (flush LSN) is sent only after the target commit, one byte before the last message's
start, and quiet periods advance through heartbeat messages the target stores first, so the slot
is never ahead of the target: a slot that is ahead at start lost changes
(``zdtp_worker.control.slot_guard``).
"""
