"""What each source relation of the stream maps to on the target, kept current as Relation
messages arrive; and the schema check that keeps the target able to take the source's rows.

pgoutput describes a relation (columns, type OIDs, replica identity) before its first change and
again after every change of its shape. Each description is checked against the target table and
the target follows the source's column changes (:mod:`.column_sync`: added columns keep the
source's values, safe widenings are applied, lossy changes stop the stream with 65). The key the
changes are applied by must exist on the target as a primary key or unique index; a keyless
``REPLICA IDENTITY FULL`` table has the empty key and is applied by whole rows (:mod:`.rowwise`).
"""

from __future__ import annotations

import logging

import psycopg

from zdtp_worker.contract.errors import DataError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.control.catalog import type_names
from zdtp_worker.incremental import binary_mode
from zdtp_worker.incremental.applier import Applier
from zdtp_worker.incremental.column_sync import ColumnSync
from zdtp_worker.incremental.health import Metrics
from zdtp_worker.incremental.pgoutput import NeedsTextMode, Relation
from zdtp_worker.incremental.staging import Shape
from zdtp_worker.incremental.target import Target

log = logging.getLogger(__name__)

# Column sets of the target's primary key and plain unique indexes (what ON CONFLICT can infer).
_UNIQUE_KEYS_SQL = """
SELECT ARRAY(SELECT a.attname FROM unnest(i.indkey[0:i.indnkeyatts - 1]) k(attnum)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum)
FROM pg_index i
WHERE i.indrelid = %s::regclass AND i.indisunique AND i.indisvalid AND i.indpred IS NULL
  AND i.indexprs IS NULL
"""


# A DEFERRABLE primary key / unique constraint on exactly the stream's key columns (either side).
_DEFERRABLE_KEY_SQL = """
SELECT EXISTS (
  SELECT 1 FROM pg_constraint c
  WHERE c.conrelid = %s::regclass AND c.contype IN ('p', 'u') AND c.condeferrable
    AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a
         WHERE a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)) = %s::text[])
"""


def deferrable_key(conn: psycopg.Connection, table: TableName, key: tuple[str, ...]) -> bool:
    row = conn.execute(_DEFERRABLE_KEY_SQL, (table.qualified, sorted(key))).fetchone()
    return bool(row and row[0])


def check_target_key(conn: psycopg.Connection, tgt_name: TableName, key: tuple[str, ...]) -> None:
    """The target must have a primary key or unique index on exactly the key's columns."""
    if not key:
        return  # whole-row match
    keys = {frozenset(r[0]) for r in conn.execute(_UNIQUE_KEYS_SQL, (tgt_name.qualified,)).fetchall()}
    if frozenset(key) not in keys:
        raise DataError(
            f"target table {tgt_name} has no primary key or unique index on ({', '.join(key)}),"
            " the key the source's changes are applied by; add one on the target"
        )


def reconcile(
    target: Target,
    tgt_name: TableName,
    columns: list[tuple[str, str]],
    key: tuple[str, ...],
    *,
    metrics: Metrics,
    sync: ColumnSync,
    source: TableName,
    first_sight: bool,
) -> None:
    """Check the key on the target and follow the source's column changes there."""
    if target.table(tgt_name) is None:
        raise DataError(f"target table {tgt_name} disappeared")
    check_target_key(target.conn, tgt_name, key)
    done = sync.reconcile(source=source, target=tgt_name, published=columns, key=key, first_sight=first_sight)
    if done:
        target.tables.pop(tgt_name, None)  # re-read the changed definition
        metrics.schema_changes += len(done)
        log.info("target %s follows the source: %s", tgt_name, "; ".join(done))


class Relations:
    """Relation OID → description, key and target :class:`Shape` (``None``: not replicated)."""

    def __init__(
        self,
        *,
        mapping: dict[TableName, TableName],
        target: Target,
        source: psycopg.Connection,
        applier: Applier,
        metrics: Metrics,
        keys: dict[TableName, tuple[str, ...]],
        sync: ColumnSync,
        binary: bool = False,
    ) -> None:
        self.mapping = mapping
        self.binary = binary  # the stream runs pgoutput in binary mode (see .binary_mode)
        self.stream_keys = keys  # per source table, from the catalog at start (stream_setup.stream_keys)
        self.sync = sync
        self.seen: set[TableName] = set()  # tables whose columns this run has already seen
        self.target = target
        self.source = source  # resolves type OIDs of Relation messages to type names
        self.applier = applier
        self.metrics = metrics
        self.relations: dict[int, Relation] = {}
        self.keys: dict[int, tuple[str, ...]] = {}
        self.shapes: dict[int, Shape | None] = {}

    def changed(self, rel: Relation) -> bool:
        return self.relations.get(rel.oid) != rel

    def update(self, rel: Relation) -> None:
        """Take a (new) description; check and adapt the target on the applier thread."""
        self.relations[rel.oid] = rel
        self.shapes.pop(rel.oid, None)
        src_name = TableName(schema=rel.namespace, name=rel.name)
        tgt_name = self.mapping.get(src_name)
        if tgt_name is None:
            self.shapes[rel.oid] = None
            return
        self.keys[rel.oid] = self.applier.sync(lambda: self._on_target(rel, src_name, tgt_name))

    def _on_target(self, rel: Relation, src_name: TableName, tgt_name: TableName) -> tuple[str, ...]:
        """Check a (new) relation description against the target; follow its columns. Applier thread."""
        names = [c.name for c in rel.columns]
        if rel.replica_identity == "f":
            # FULL flags every column as key: apply by the table's own key (PK / unique NOT NULL
            # index, as found at start), or by whole rows when it has none.
            key = self.stream_keys.get(src_name, ())
        else:
            key = tuple(c.name for c in rel.columns if c.is_key)
            if not key or rel.replica_identity == "n":
                raise DataError(
                    f"source table {rel.qualified} no longer has a primary key / replica identity"
                    " (incompatible schema change); not applying"
                )
        if (
            key
            and rel.replica_identity == "f"
            and (
                deferrable_key(self.source, src_name, key) or deferrable_key(self.target.conn, tgt_name, key)
            )
        ):
            # A DEFERRABLE key may hold duplicates inside a source transaction (one statement
            # swapping two rows' keys): changes compacted by key would mix the two rows up, and
            # ON CONFLICT cannot use a deferrable arbiter. Apply such a table like a keyless one:
            # by whole old row (REPLICA IDENTITY FULL sends it), in order, constraints deferred.
            if src_name not in self.seen:
                log.warning(
                    "source table %s: its key (%s) is DEFERRABLE; applying its changes row by row in"
                    " order, with the target's constraints deferred to commit",
                    rel.qualified,
                    ", ".join(key),
                )
            key = ()
        missing = [k for k in key if k not in names]
        if missing:
            raise DataError(f"source table {rel.qualified}: key column(s) {missing} not published")
        types = type_names(self.source, [(c.type_oid, c.type_modifier) for c in rel.columns])
        reconcile(
            self.target,
            tgt_name,
            list(zip(names, types, strict=True)),
            key,
            metrics=self.metrics,
            sync=self.sync,
            source=src_name,
            first_sight=src_name not in self.seen,
        )
        self.seen.add(src_name)
        if self.binary:
            self._check_binary(rel, tgt_name, list(zip(names, types, strict=True)))
        return key

    def _check_binary(self, rel: Relation, tgt_name: TableName, columns: list[tuple[str, str]]) -> None:
        """A binary stream carries this relation only if the start-up rule still holds for it (a
        column added mid-stream may be an enum; a type change may leave the target wider)."""
        bad = binary_mode.unportable_types(self.source, [c.type_oid for c in rel.columns])
        info = self.target.table(tgt_name)
        assert info is not None
        mismatched = binary_mode.type_mismatches(columns, info.column_types)
        if bad or mismatched:
            raise NeedsTextMode(
                f"relation {rel.qualified} now has "
                + (f"types without a portable binary form ({', '.join(bad)})" if bad else "")
                + (" and " if bad and mismatched else "")
                + (f"other column types on the target ({', '.join(mismatched)})" if mismatched else "")
            )

    def shape(self, oid: int) -> Shape | None:
        """The target shape of relation ``oid`` (built on first use), ``None`` if not replicated."""
        try:
            return self.shapes[oid]
        except KeyError:
            pass
        rel = self.relations.get(oid)
        if rel is None:
            raise DataError(f"change for relation {oid} arrived before its Relation message")
        tgt_name = self.mapping.get(TableName(schema=rel.namespace, name=rel.name))
        shape = None
        if tgt_name is not None:
            key = self.keys[oid]
            shape = self.applier.sync(lambda: self.target.shape(rel, tgt_name, key))
        self.shapes[oid] = shape
        return shape
