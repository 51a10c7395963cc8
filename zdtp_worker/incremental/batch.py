"""An in-memory batch of decoded changes, compacted per table by primary key.

Within one target transaction only the last state of each key matters: a row (upsert), a
partial row (an update that left TOASTed columns unchanged: the target keeps its value), or
deleted. Different keys are independent, so the target may apply all deletes, then all upserts,
then all partial updates, in any order, and reach the same state as replaying the changes one by
one. This is what lets the apply step use a few set-based statements instead of one per change.

The batch holds no transaction boundaries: the stream decides when to flush it into the open
target transaction and when to commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zdtp_worker.incremental.pgoutput import UNCHANGED, Relation, Value


class _Deleted:
    def __repr__(self) -> str:
        return "DELETED"


DELETED = _Deleted()
Entry = list[Value] | _Deleted


class NeedsTargetRow(Exception):
    """An update moved a row to a new key but left TOASTed columns unchanged, and the batch does
    not hold the old row: the caller must flush and copy the unchanged values on the target."""


@dataclass
class TableBatch:
    relation: Relation
    key_indexes: tuple[int, ...]
    entries: dict[tuple[Value, ...], Entry] = field(default_factory=dict)
    # Keys whose first change in this batch was an INSERT: absent from the target before the batch
    # (exactly-once keeps target = source), so their final rows can be COPYed in directly.
    new_keys: set[tuple[Value, ...]] = field(default_factory=set)
    # The COPY text of the entries (staging.stage_rows), when the decode thread built it before
    # handing the batch to the applier; None: the applier builds it.
    staged: tuple[bytes, list[bytes], int, int, int] | None = None

    def key(self, values: list[Value]) -> tuple[Value, ...]:
        ki = self.key_indexes
        return (values[ki[0]],) if len(ki) == 1 else tuple([values[i] for i in ki])


@dataclass
class Batch:
    tables: dict[int, TableBatch] = field(default_factory=dict)
    changes: int = 0  # changes added since the last clear (before compaction)

    def __len__(self) -> int:
        return sum(len(t.entries) for t in self.tables.values())

    def table(self, relation: Relation, key_indexes: tuple[int, ...]) -> TableBatch:
        tb = self.tables.get(relation.oid)
        if tb is None or tb.relation is not relation:
            if tb is not None and tb.entries:
                raise RuntimeError("relation changed shape with buffered changes; flush first")
            tb = TableBatch(relation, key_indexes)
            self.tables[relation.oid] = tb
        return tb

    def has_entries(self, oid: int) -> bool:
        tb = self.tables.get(oid)
        return bool(tb and tb.entries)

    def insert(self, relation: Relation, key_indexes: tuple[int, ...], new: list[Value]) -> None:
        tb = self.tables.get(relation.oid)
        if tb is None or tb.relation is not relation:
            tb = self.table(relation, key_indexes)
        # One key column is the common case: skip building a list for it.
        key = (new[key_indexes[0]],) if len(key_indexes) == 1 else tuple([new[i] for i in key_indexes])
        entries = tb.entries
        if key not in entries:
            tb.new_keys.add(key)
        entries[key] = new
        self.changes += 1

    def update(
        self, relation: Relation, key_indexes: tuple[int, ...], new: list[Value], old: list[Value] | None
    ) -> None:
        tb = self.tables.get(relation.oid)
        if tb is None or tb.relation is not relation:
            tb = self.table(relation, key_indexes)
        key = (new[key_indexes[0]],) if len(key_indexes) == 1 else tuple([new[i] for i in key_indexes])
        previous_key = key
        if old is not None:
            old_key = tb.key(old)
            if old_key != key:
                previous_key = old_key
        if UNCHANGED in new:
            prior = tb.entries.get(previous_key)
            if isinstance(prior, list):
                new = [p if v is UNCHANGED else v for v, p in zip(new, prior, strict=True)]
            elif previous_key != key:
                raise NeedsTargetRow(relation.qualified)
        if previous_key != key:
            tb.entries[previous_key] = DELETED
        tb.entries[key] = new
        self.changes += 1

    def delete(self, relation: Relation, key_indexes: tuple[int, ...], old: list[Value]) -> None:
        tb = self.table(relation, key_indexes)
        tb.entries[tb.key(old)] = DELETED
        self.changes += 1

    def drop_table(self, oid: int) -> None:
        """Forget buffered changes of a table (it is about to be truncated)."""
        self.tables.pop(oid, None)

    def clear(self) -> None:
        self.tables.clear()
        self.changes = 0
