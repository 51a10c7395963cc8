"""What each source relation of the stream maps to on the target, kept current as Relation
messages arrive; and the schema check that keeps the target able to take the source's rows.

pgoutput describes a relation (columns, type OIDs, replica identity) before its first change and
again after every change of its shape. Each description is checked against the target table:
a missing column is added there, a changed type or key stops the stream (65), because applying
rows of another shape would corrupt the target.
"""

from __future__ import annotations

import logging

import psycopg

from zdtp_worker.contract.errors import DataError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.control.catalog import type_names
from zdtp_worker.incremental.applier import Applier
from zdtp_worker.incremental.health import Metrics
from zdtp_worker.incremental.pgoutput import Relation
from zdtp_worker.incremental.staging import Shape
from zdtp_worker.incremental.target import Target

log = logging.getLogger(__name__)


def reconcile(
    target: Target,
    tgt_name: TableName,
    columns: list[tuple[str, str]],
    key: tuple[str, ...],
    *,
    metrics: Metrics,
) -> None:
    """Add columns the target lacks; refuse a different key or a changed column type."""
    tgt = target.table(tgt_name)
    if tgt is None:
        raise DataError(f"target table {tgt_name} disappeared")
    if tuple(sorted(tgt.pk)) != tuple(sorted(key)):
        raise DataError(
            f"target table {tgt_name} primary key ({', '.join(tgt.pk)}) differs from the source key"
            f" ({', '.join(key)})"
        )
    have_types = tgt.column_types
    for name, type_sql in columns:
        have = have_types.get(name)
        if have is None:
            target.add_column(tgt_name, name, type_sql)
            metrics.schema_changes += 1
        elif have != type_sql:
            raise DataError(
                f"column {name} of {tgt_name} is {type_sql} on the source but {have} on the target"
                " (incompatible schema change); not applying"
            )


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
    ) -> None:
        self.mapping = mapping
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
        tgt_name = self.mapping.get(TableName(schema=rel.namespace, name=rel.name))
        if tgt_name is None:
            self.shapes[rel.oid] = None
            return
        self.keys[rel.oid] = self.applier.sync(lambda: self._on_target(rel, tgt_name))

    def _on_target(self, rel: Relation, tgt_name: TableName) -> tuple[str, ...]:
        """Check a (new) relation description against the target; add columns. Applier thread."""
        tgt = self.target.table(tgt_name)
        if tgt is None:
            raise DataError(f"target table {tgt_name} disappeared")
        names = [c.name for c in rel.columns]
        # REPLICA IDENTITY FULL flags every column as key: use the primary key instead.
        key = tgt.pk if rel.replica_identity == "f" else tuple(c.name for c in rel.columns if c.is_key)
        if not key or rel.replica_identity == "n":
            raise DataError(
                f"source table {rel.qualified} no longer has a primary key / replica identity"
                " (incompatible schema change); not applying"
            )
        missing = [k for k in key if k not in names]
        if missing:
            raise DataError(f"source table {rel.qualified}: key column(s) {missing} not published")
        types = type_names(self.source, [(c.type_oid, c.type_modifier) for c in rel.columns])
        reconcile(self.target, tgt_name, list(zip(names, types, strict=True)), key, metrics=self.metrics)
        return key

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
