"""Applying changes of a keyless ``REPLICA IDENTITY FULL`` table: whole rows, one change at a time.

A table with no primary key and no unique index on NOT NULL columns can still stream when the
source publishes the whole old row with each UPDATE/DELETE (``REPLICA IDENTITY FULL``), the way
PostgreSQL's own subscriber does it: find *one* target row equal to the old row in every column
and change or delete that one. Such a table may hold identical rows ("twins"); changing one must
leave the others, so changes are neither compacted nor reordered: they are applied in stream
order, inside the batch's target transaction.

Rows are compared in their text form (``col::text IS NOT DISTINCT FROM …``): both sessions use the
same output settings (see ``zdtp_worker.pg.session``), every type has a text form (``json`` has
no equality operator), and NULL matches NULL. An UPDATE whose new row leaves a TOASTed column
unchanged keeps the target's value for it.

Without any index to search by, each UPDATE/DELETE scans the table: fine for the small lookup
tables that usually lack a key; large ones should get a key (the plan says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import psycopg

from zdtp_worker.contract.errors import DataError
from zdtp_worker.incremental.pgoutput import UNCHANGED, Value
from zdtp_worker.incremental.staging import copy_value
from zdtp_worker.pg.quoting import ident

Op = Literal["I", "U", "D"]


@dataclass(frozen=True)
class RowChange:
    op: Op
    new: list[Value] | None = None
    old: list[Value] | None = None


def _text(value: Value) -> str | None:
    if value is None or value is UNCHANGED:
        return None
    assert isinstance(value, bytes)
    return value.decode()


@dataclass
class RowwiseTable:
    """Ordered changes of one keyless table, applied by whole-row match (runs of inserts by COPY)."""

    target_qualified: str
    columns: list[str]  # the Relation message's columns (generated ones already excluded)
    only: str = ""  # "ONLY " for a plain target table: its inheritance children's rows stay out
    changes: list[RowChange] = field(default_factory=list)

    def _match(self, old: list[Value]) -> tuple[str, list[str | None]]:
        where = " AND ".join(f"{ident(c)}::text IS NOT DISTINCT FROM %s" for c in self.columns)
        return where, [_text(v) for v in old]

    def apply(self, conn: psycopg.Connection) -> int:
        """Apply and forget the buffered changes in order; returns how many were applied."""
        table = self.only + self.target_qualified  # (COPY takes no ONLY: it writes this table only)
        # Like the source, check unique keys at commit: in-order changes of a DEFERRABLE key (a
        # swap of two rows' keys) pass through states an immediate check refuses. Non-deferrable
        # constraints are unaffected (SET CONSTRAINTS touches deferrable ones only).
        conn.execute("SET CONSTRAINTS ALL DEFERRED")
        cols = ", ".join(ident(c) for c in self.columns)
        n = 0
        inserts: list[bytes] = []  # a run of consecutive inserts goes in as one COPY
        for change in self.changes:
            if change.op == "I":
                assert change.new is not None
                inserts.append(b"\t".join([copy_value(v) for v in change.new]) + b"\n")
                n += 1
                continue
            if inserts:
                self._copy(conn, cols, inserts)
                inserts = []
            assert change.old is not None
            if any(v is UNCHANGED for v in change.old):
                raise DataError(f"target {table}: an old row arrived without all its values")
            where, params = self._match(change.old)
            one_row = f"ctid = (SELECT ctid FROM {table} WHERE {where} LIMIT 1)"
            if change.op == "D":
                cur = conn.execute(f"DELETE FROM {table} WHERE {one_row}", params)
            else:
                assert change.new is not None
                sets = [(c, v) for c, v in zip(self.columns, change.new, strict=True) if v is not UNCHANGED]
                assignments = ", ".join(f"{ident(c)} = %s" for c, _ in sets)
                cur = conn.execute(
                    f"UPDATE {table} SET {assignments} WHERE {one_row}",
                    [_text(v) for _, v in sets] + params,
                )
            if cur.rowcount != 1:
                verb = "delete" if change.op == "D" else "update"
                raise DataError(
                    f"target {table}: no row equal to the source's old row to {verb};"
                    " the target diverged from the source"
                )
            n += 1
        if inserts:
            self._copy(conn, cols, inserts)
        self.changes.clear()
        return n

    def _copy(self, conn: psycopg.Connection, cols: str, rows: list[bytes]) -> None:
        with conn.cursor().copy(f"COPY {self.target_qualified} ({cols}) FROM STDIN") as cp:
            cp.write(b"".join(rows))
