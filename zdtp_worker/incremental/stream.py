"""One CDC stream's life: pre-flight, lease, state, target tables, then the change loop.

Start-up order, chosen so bad input changes nothing: check the source (wal_level, privilege,
tables) before taking the lease or touching the target; take the stream's lease (a replica that
does not get it stands by); read the stored state; create or adapt the target tables; make sure
the publication and slot exist (or run the initial-snapshot hand-off); start replication at the
stored LSN and hand over to :class:`~zdtp_worker.incremental.loop.ChangeLoop`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
import psycopg2
from psycopg2.extras import ReplicationCursor

from zdtp_worker.contract.errors import DataError
from zdtp_worker.contract.spec import TableName, WorkerSpec
from zdtp_worker.control import slot_guard, stream_setup
from zdtp_worker.control.catalog import TableDef
from zdtp_worker.control.names import publication_name, slot_name, stream_key
from zdtp_worker.control.session import connect
from zdtp_worker.incremental import binary_mode, replication
from zdtp_worker.incremental.applier import Applier
from zdtp_worker.incremental.column_sync import ColumnSync
from zdtp_worker.incremental.health import Metrics
from zdtp_worker.incremental.housekeeping import Housekeeping, heartbeat
from zdtp_worker.incremental.loop import ChangeLoop, RunStats
from zdtp_worker.incremental.pgoutput import DecodeError, NeedsTextMode, PgOutputDecoder, format_lsn
from zdtp_worker.incremental.relations import Relations, reconcile
from zdtp_worker.incremental.sequences import SequenceKeeper
from zdtp_worker.incremental.source_watch import SourceWatch
from zdtp_worker.incremental.target import Target
from zdtp_worker.pg.errors import classify

log = logging.getLogger(__name__)

LEASE_POLL_SECONDS = 1.0

# Called with the replication cursor when the stream must start from an exported snapshot;
# returns the LSN up to which the snapshot already covers the source (see main.initial_snapshot).
SnapshotHandoff = Callable[[ReplicationCursor, Target], int]


class Stream:
    def __init__(
        self,
        spec: WorkerSpec,
        *,
        source_dsn: str,
        target_dsn: str,
        metrics: Metrics,
        stop: threading.Event,
        snapshot_handoff: SnapshotHandoff | None = None,
    ) -> None:
        self.spec = spec
        self.opts = spec.incremental
        self.source_dsn = source_dsn
        self.slot = slot_name(spec)
        self.publication = publication_name(spec)
        self.metrics = metrics
        self.stop = stop
        self.snapshot_handoff = snapshot_handoff
        self.mapping: dict[TableName, TableName] = {t.source: t.target_name for t in spec.tables}
        self.target = Target(
            target_dsn,
            stream=stream_key(spec),
            application_name=f"zdtp-cdc-{spec.worker}",
            source_dsn=source_dsn,
            metrics=metrics,
        )
        self.src: psycopg.Connection | None = None
        self.watch_conn: psycopg.Connection | None = None  # the source watch's own session
        self.repl: psycopg2.extensions.connection | None = None
        self.stats = RunStats()
        self.applier = Applier(on_committed=lambda lsn: None)  # rewired to the loop once it exists
        self.binary_allowed = True  # until binary mode met something it cannot carry (.binary_mode)
        self.watch: SourceWatch | None = None  # the source watch (created at the first start-up)
        # The source's column types at the first start-up, kept across a restart in text mode
        # like the watch: a narrowing seen in binary mode rolls back and is seen again after it.
        self.started_types: dict[TableName, dict[str, str]] = {}

    def run(self) -> RunStats:
        try:
            while True:
                try:
                    self._run()
                    break
                except NeedsTextMode as exc:
                    if not self.target.binary:
                        raise DataError(f"text-mode stream: {exc}") from None
                    # Nothing of the open target transaction is committed: drop it with the
                    # connections and stream again from the last committed source transaction.
                    log.warning(
                        "stream %s: binary mode cannot carry this: %s; rolling back the open batch"
                        " and restarting in text mode",
                        self.slot,
                        exc,
                    )
                    self._restart_text()
        except (psycopg.Error, psycopg2.Error) as exc:
            self.metrics.connections_ok = False
            raise classify(exc, role="stream") from None
        except DecodeError as exc:
            raise DataError(f"cannot decode a replication message: {exc}") from None
        finally:
            self.metrics.streaming = False
            self.metrics.lease_held = False
            self.applier.shutdown()
            self._close()
        return self.stats

    def _restart_text(self) -> None:
        self.metrics.streaming = False
        self.metrics.lease_held = False
        self.applier.shutdown()  # in-flight work ends (its errors are moot: rolled back below)
        self._close()  # closing the target session rolls its transaction back, lease included
        self.src = self.watch_conn = self.repl = None
        self.target.tables.clear()
        self.target.refetched = self.target.refetch_gone = 0
        self.target.binary = False
        self.binary_allowed = False
        self.applier = Applier(on_committed=lambda lsn: None)

    def _close(self) -> None:
        for conn in (self.target, self.src, self.watch_conn, self.repl):
            try:
                if conn is not None:
                    conn.close()
            except Exception:  # closing after a failure must not mask it
                log.debug("close failed", exc_info=True)

    def _run(self) -> None:
        self.src = connect(self.source_dsn, role="source", application_name="zdtp-cdc")
        names = list(self.mapping)
        fix = self.opts.set_replica_identity
        slot_guard.check_namespace(slot=self.slot)
        tables = stream_setup.check_source(self.src, names, set_replica_identity=fix)
        if self.watch is None:  # kept across a restart in text mode: its baseline stays the first
            self.watch = SourceWatch(
                slot=self.slot,
                streamed={(t.schema_, t.name) for t in self.mapping},
                include=list(self.opts.include),
                exclude=list(self.opts.exclude),
            )
        # The partitions' baseline, first thing: before the lease and the state row (which tell
        # the outside this stream is up) and long before START_REPLICATION (see SourceWatch.prime).
        self.watch.prime(self.src)
        self.target.connect()
        if not self._acquire_lease():
            self.stats.stopped = True
            return
        self.target.load_state()
        handoff = self.snapshot_handoff is not None and self.target.commit_lsn == 0
        if not handoff:  # (a hand-off replaces the slot and copies everything)
            # Before touching anything: would streaming from the slot skip changes the target
            # never got? (slot dropped, recreated, advanced by someone else, or invalidated)
            state = slot_guard.read_slot(self.src, self.slot)
            limit = self.target.confirm_limit
            if limit is None and state is not None:
                # State written by a zdtp that let the client library confirm keepalive positions:
                # a slot ahead of it is expected once. Lost, dropped or invalidated slots still fail.
                log.warning("stream %s: state from an older zdtp, slot position accepted once", self.slot)
                limit = state.confirmed_flush
            slot_guard.check_resume(
                state, slot=self.slot, applied_end_lsn=self.target.end_lsn, confirm_limit=limit or 0
            )
        self.metrics.source_wal_keep_unlimited = slot_guard.warn_unlimited_retention(self.src, slot=self.slot)
        keys = stream_setup.stream_keys(self.src, names, set_replica_identity=fix)
        sync = ColumnSync(
            self.src,
            self.target.conn,
            allow_lossy=self.opts.allow_lossy_type_changes,
            started=self.started_types,
        )
        self._prepare_target(tables, keys, sync)
        stream_setup.ensure_publication(self.src, self.publication, names)
        self.repl = replication.replication_connect(self.source_dsn)
        cur = self.repl.cursor()
        if handoff:
            assert self.snapshot_handoff is not None
            self.snapshot_handoff(cur, self.target)
        else:
            stream_setup.ensure_slot(self.src, self.slot)
        self.metrics.applied_lsn = self.target.end_lsn
        self.target.binary = self._binary_mode(tables, keys)
        self.watch_conn = connect(self.source_dsn, role="source", application_name="zdtp-cdc-watch")
        loop = ChangeLoop(
            cur=cur,
            target=self.target,
            decoder=PgOutputDecoder(binary=self.target.binary),
            relations=Relations(
                mapping=self.mapping,
                target=self.target,
                source=self.src,
                applier=self.applier,
                metrics=self.metrics,
                keys={s: keys[s] for s in self.mapping},
                sync=sync,
                binary=self.target.binary,
            ),
            applier=self.applier,
            opts=self.opts,
            metrics=self.metrics,
            stats=self.stats,
            stop=self.stop,
            skip_upto=self.target.commit_lsn,
            housekeeping=Housekeeping(
                target=self.target,
                applier=self.applier,
                metrics=self.metrics,
                watch=self.watch,
                watch_conn=self.watch_conn,
                sequences=SequenceKeeper(dict(self.mapping)),
                source=self.src,
                heartbeats=self._first_heartbeat(),
                mapping=dict(self.mapping),
                keys={s: keys[s] for s in self.mapping},
            ),
        )
        self.applier.on_committed = loop.on_committed
        replication.start_replication(
            cur,
            slot=self.slot,
            publication=self.publication,
            start_lsn=self.target.end_lsn,
            messages=loop.heartbeats,
            binary=self.target.binary,
        )
        log.info(
            "streaming slot %s publication %s from %s (applied up to commit %s), %s values",
            self.slot,
            self.publication,
            format_lsn(self.target.end_lsn),
            format_lsn(self.target.commit_lsn),
            "binary" if self.target.binary else "text",
        )
        self.metrics.streaming = True
        loop.run()

    def _binary_mode(self, tables: dict[TableName, TableDef], keys: dict[TableName, tuple[str, ...]]) -> bool:
        """Whether this stream may run pgoutput in binary mode (the rule: :mod:`.binary_mode`)."""
        assert self.src is not None
        unportable: dict[TableName, list[str]] = {}
        mismatched: dict[TableName, list[str]] = {}
        version = self.src.info.server_version
        if self.binary_allowed and binary_mode.ALLOWED and version >= 140000 and all(keys.values()):
            for src_name, tgt_name in self.mapping.items():
                oids = binary_mode.column_type_oids(self.src, src_name)
                unportable[src_name] = binary_mode.unportable_types(self.src, oids)
                info = self.target.table(tgt_name)
                assert info is not None
                plain = [(c.name, c.type_sql) for c in tables[src_name].columns if not c.generated]
                mismatched[tgt_name] = binary_mode.type_mismatches(plain, info.column_types)
            self.target.conn.commit()  # (the catalog reads opened a transaction)
        reason = (
            "binary mode left after a fallback"
            if not self.binary_allowed
            else binary_mode.why_text(
                server_version=version, keys=keys, unportable=unportable, mismatched=mismatched
            )
        )
        if reason is not None:
            log.info("stream %s streams text values: %s", self.slot, reason)
        return reason is None

    def _first_heartbeat(self) -> bool:
        """Emit a heartbeat before streaming and store its LSN as the confirm limit (see
        ``Target.set_confirm_limit``); ``False`` when the source cannot (PG < 14, no privilege):
        the stream then falls back to storing keepalive positions when idle."""
        assert self.src is not None and self.watch_conn is not None
        lsn = heartbeat(self.watch_conn, self.slot) if self.src.info.server_version >= 140000 else None
        # Stored either way: a NULL limit marks state from an older zdtp (see the start-up check).
        self.target.set_confirm_limit(lsn or 0)
        return lsn is not None

    def _acquire_lease(self) -> bool:
        waited = False
        while not self.stop.is_set():
            self.metrics.beat()
            if self.target.try_lease():
                self.metrics.lease_held = True
                if waited:
                    log.info("took over the lease of stream %s", self.target.stream)
                return True
            if not waited:
                log.info("stream %s is held by another replica; standing by", self.target.stream)
                waited = True
            self.stop.wait(LEASE_POLL_SECONDS)
        return False

    def _prepare_target(
        self, tables: dict[TableName, TableDef], keys: dict[TableName, tuple[str, ...]], sync: ColumnSync
    ) -> None:
        """Create missing target tables; follow the source's columns; check the keys."""
        for src_name, tgt_name in self.mapping.items():
            info = tables[src_name]
            key = keys[src_name]
            if self.target.table(tgt_name) is None:
                log.warning("target table %s is missing: creating it empty", tgt_name)
                plain = [(c.name, c.type_sql, c.not_null) for c in info.columns if not c.generated]
                self.target.create_table(tgt_name, plain, key)
            reconcile(
                self.target,
                tgt_name,
                [(c.name, c.type_sql) for c in info.columns if not c.generated],
                key,
                metrics=self.metrics,
                sync=sync,
                source=src_name,
                first_sight=True,
            )
        self.target.conn.commit()
