"""A slow look at the source while the stream runs: slot health, retained WAL, new tables.

Every ``interval`` seconds, on its own short queries (never on the replication connection):

- the WAL the stream's slot retains on the source (``pg_current_wal_lsn() - restart_lsn``) and,
  when ``max_slot_wal_keep_size`` is set, how much more it may retain before the source
  invalidates it (``safe_wal_size``) — exported as metrics so an alert fires before the disk
  fills or the slot is lost;
- an invalidated slot is a data error at once (it never heals; see ``control.slot_guard``);
- tables that match the sync's ``include`` patterns but are not in this stream (created after the
  plan): logged once each and counted in a metric. The stream cannot add them by itself (their
  existing rows need a copy); the next ``full+incremental`` run plans and picks them up;
- the partitions of each streamed partitioned table, as seen before streaming started: a
  partition ``DETACH``ed or ``ATTACH``ed while streaming changes which rows the table holds
  without any row change in the WAL (the target would keep the detached rows, or lack the
  attached ones), so the stream stops with a data error naming it; a ``full+incremental``
  re-run copies the new shape;
- the storage file (``relfilenode``) of each of those partitions: a ``TRUNCATE`` of one partition
  is not in the logical stream when the publication publishes via the partition root (PostgreSQL
  skips it), so a partition whose file changed and holds no row older than the change (a
  rewrite by ``VACUUM FULL`` / ``CLUSTER`` keeps the rows' ``xmin``) becomes a :class:`Suspect`:
  :mod:`.housekeeping` then compares the partition's keys on both sides once the target has
  caught up, and stops the stream with a data error if the target keeps rows the source no
  longer has (see :func:`extra_target_keys`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import psycopg

from zdtp_worker.contract.errors import DataError
from zdtp_worker.contract.identifiers import TablePattern, render_qualified
from zdtp_worker.control import slot_guard
from zdtp_worker.pg.quoting import ident

log = logging.getLogger(__name__)

_TABLES_SQL = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'zdtp') AND n.nspname NOT LIKE 'pg\\_%%'
"""

# Every partition (at any depth) of each partitioned table, by name.
_PARTITIONS_SQL = """
SELECT n.nspname, c.relname,
       ARRAY(SELECT t.relid::regclass::text FROM pg_partition_tree(c.oid) t WHERE t.relid <> c.oid
             ORDER BY 1)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'p' AND NOT c.relispartition
"""


# Every leaf partition (at any depth) of each partitioned table, with its storage file.
_LEAF_FILES_SQL = """
SELECT n.nspname, c.relname, t.relid::regclass::text, l.oid::bigint, l.relfilenode::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL pg_partition_tree(c.oid) t JOIN pg_class l ON l.oid = t.relid
WHERE c.relkind = 'p' AND NOT c.relispartition AND t.isleaf
"""
# Does the partition hold a row written before its pg_class row last changed (the new file)?
_OLDER_ROWS_SQL = """
SELECT EXISTS (SELECT 1 FROM ONLY {leaf} WHERE age(xmin) > (SELECT age(xmin) FROM pg_class WHERE oid = %s))
"""


@dataclass
class Suspect:
    """A partition whose file changed with no row older than the change: maybe truncated."""

    root: tuple[str, str]
    leaf: str  # regclass text
    oid: int
    constraint: str  # pg_get_partition_constraintdef: the rows of this partition, on the root
    wait_lsn: int = 0  # the target must have applied up to here before the next comparison
    extra: frozenset[tuple[str, ...]] | None = None  # on the target only, at the last comparison


@dataclass(frozen=True)
class WatchReport:
    retained_bytes: int | None
    safe_wal_bytes: int | None
    not_streamed: tuple[str, ...]  # canonical names of matching tables outside this stream


@dataclass
class SourceWatch:
    slot: str
    streamed: set[tuple[str, str]]  # (schema, name) of the stream's source tables
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    interval: float = 15.0
    reported: set[str] = field(default_factory=set)
    last: float = 0.0
    # Streamed partitioned table → its partitions at the first poll (None: not polled yet).
    partitions: dict[tuple[str, str], frozenset[str]] | None = None
    # Leaf partition (regclass text) → its relfilenode, for the streamed partitioned tables.
    files: dict[str, int] | None = None
    suspects: list[Suspect] = field(default_factory=list)  # taken over by Housekeeping

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.interval

    def poll(self, conn: psycopg.Connection) -> WatchReport:
        self.last = time.monotonic()
        state = slot_guard.read_slot(conn, self.slot)
        if state is not None and state.invalidated:
            slot_guard.check_resume(state, slot=self.slot, applied_end_lsn=0)  # raises DataError
        if state is None:
            raise DataError(
                f"replication slot {self.slot} disappeared while streaming (dropped by someone);"
                f" changes since are gone; {slot_guard.RERUN}"
            )
        self._check_partitions(conn)
        self._check_files(conn)
        return WatchReport(
            retained_bytes=state.retained_bytes,
            safe_wal_bytes=state.safe_wal_size,
            not_streamed=tuple(self._new_tables(conn)),
        )

    def prime(self, conn: psycopg.Connection) -> None:
        """Take the partitions' baseline now, when the stream starts (before its lease and state
        row). Taken at the first poll instead, a DETACH/ATTACH between start-up and that poll (the
        loop's first idle moment, seconds later on a busy machine) became the baseline itself and
        went unnoticed. A change while no worker runs (after the copy, before this start) is
        not seen: the baseline is what the source has when the stream starts."""
        if self.partitions is None:
            self._check_partitions(conn)
        if self.files is None:
            self._check_files(conn)

    def _check_files(self, conn: psycopg.Connection) -> None:
        rows = [r for r in conn.execute(_LEAF_FILES_SQL).fetchall() if (r[0], r[1]) in self.streamed]
        now = {leaf: filenode for _, _, leaf, _, filenode in rows}
        if self.files is None:
            self.files = now
            return
        for schema, name, leaf, oid, filenode in rows:
            before = self.files.get(leaf)
            if before is None or before == filenode:
                continue  # a new partition is the partition check's (it stops the stream)
            older = conn.execute(_OLDER_ROWS_SQL.format(leaf=leaf), (oid,)).fetchone()
            if older and older[0]:
                log.info("source partition %s was rewritten (VACUUM FULL, CLUSTER, ...): rows kept", leaf)
                continue
            row = conn.execute("SELECT pg_get_partition_constraintdef(%s)", (oid,)).fetchone()
            log.warning(
                "source partition %s got a new file holding no row from before (TRUNCATE of the"
                " partition, which logical replication does not carry?): comparing its keys with"
                " the target",
                leaf,
            )
            self.suspects.append(
                Suspect(root=(schema, name), leaf=leaf, oid=oid, constraint=row[0] if row else "")
            )
        conn.commit()
        self.files = now

    def _check_partitions(self, conn: psycopg.Connection) -> None:
        now = {
            (schema, name): frozenset(parts)
            for schema, name, parts in conn.execute(_PARTITIONS_SQL).fetchall()
            if (schema, name) in self.streamed
        }
        if self.partitions is None:
            self.partitions = now
            return
        for table, before in self.partitions.items():
            after = now.get(table, frozenset())
            if after != before:
                changes = [f"{p} detached" for p in sorted(before - after)]
                changes += [f"{p} attached" for p in sorted(after - before)]
                raise DataError(
                    f"source table {render_qualified(*table)}: partitions changed while streaming"
                    f" ({', '.join(changes)}); their rows moved in or out without row changes in the"
                    f" WAL, so the target would diverge; {slot_guard.RERUN}"
                )

    def _new_tables(self, conn: psycopg.Connection) -> list[str]:
        if not self.include:
            return []
        include = [TablePattern(p) for p in self.include]
        exclude = [TablePattern(p) for p in self.exclude]
        out = []
        for schema, name in conn.execute(_TABLES_SQL).fetchall():
            if (schema, name) in self.streamed:
                continue
            if not any(p.matches(schema, name) for p in include) or any(
                p.matches(schema, name) for p in exclude
            ):
                continue
            table = render_qualified(schema, name)
            out.append(table)
            if table not in self.reported:
                self.reported.add(table)
                log.warning(
                    "source table %s matches include but is not in this stream (created after the"
                    " plan?): its changes are not synced; the next full+incremental run picks it up",
                    table,
                )
        return sorted(out)


def extra_target_keys(
    source: psycopg.Connection,
    target: psycopg.Connection,
    suspect: Suspect,
    *,
    target_table: str,
    key: tuple[str, ...],
) -> frozenset[tuple[str, ...]]:
    """Keys the target holds in the suspect partition's range that the source partition lacks.

    The target is read first, then the source: a row inserted meanwhile is on the source (not
    extra); a row deleted on the source and not yet applied is extra for now, so the caller
    stops only on keys that stay extra across two comparisons with a catch-up between them.
    """
    cols = ", ".join(f"{ident(k)}::text" for k in key)
    where = f" WHERE {suspect.constraint}" if suspect.constraint else ""
    on_target = {tuple(r) for r in target.execute(f"SELECT {cols} FROM {target_table}{where}").fetchall()}
    on_source = {tuple(r) for r in source.execute(f"SELECT {cols} FROM ONLY {suspect.leaf}").fetchall()}
    source.commit()
    return frozenset(on_target - on_source)
