"""How a batch reaches a target table: the per-relation SQL (a :class:`Shape`) and the COPY text
of the staging table. Pure: builds text, runs nothing.

A batch is applied per table through a temporary staging table: one ``COPY`` of the compacted
entries, then at most three statements (``DELETE ... USING``, ``INSERT ... ON CONFLICT DO UPDATE``,
and an ``UPDATE`` for rows whose TOASTed columns did not change). Rows of keys the batch inserted
first can skip staging and go straight into the target with ``COPY``. Values stay in PostgreSQL's
text form from the source to the target (both sessions use the same settings, see ``pg.session``).
"""

from __future__ import annotations

from dataclasses import dataclass

from zdtp_worker.contract.spec import TableName
from zdtp_worker.incremental.batch import DELETED, TableBatch
from zdtp_worker.incremental.pgoutput import UNCHANGED, Relation, Value
from zdtp_worker.pg.quoting import ident


@dataclass
class Shape:
    """How one source relation (as last described by a Relation message) maps onto its target."""

    relation: Relation
    target: TableName
    key_indexes: tuple[int, ...]
    stage: str
    sql_delete: str
    sql_upsert: str
    sql_partial: str
    sql_partial_missing: str  # staged partial rows whose key the target lacks (see .refetch)
    sql_copy_direct: str
    used_in_txn: bool = False

    @property
    def rowwise(self) -> bool:
        """No key: changes are applied by whole-row match, in order (see :mod:`.rowwise`)."""
        return not self.key_indexes


def build_shape(
    relation: Relation,
    *,
    target: TableName,
    key_names: tuple[str, ...],
    column_types: dict[str, str],
    seq: int,
    generated: frozenset[str] = frozenset(),
) -> tuple[Shape, str]:
    """The relation's apply statements, and the DDL of its staging table (run it before use).

    ``generated``: columns the target computes itself; a publication that sends generated values
    (PG 18 ``publish_generated_columns``) still stages them, but they are never written.
    """
    all_names = [c.name for c in relation.columns]
    key_indexes = tuple(all_names.index(k) for k in key_names)
    names = [n for n in all_names if n not in generated]
    stage = f"pg_temp.zdtp_stage_{seq}"
    cols = ", ".join(ident(n) for n in names)
    keys_match = " AND ".join(f"t.{ident(k)} = s.{ident(k)}" for k in key_names)
    non_key = [n for n in names if n not in key_names]
    if non_key:
        on_conflict = "DO UPDATE SET " + ", ".join(f"{ident(n)} = EXCLUDED.{ident(n)}" for n in non_key)
    else:
        on_conflict = "DO NOTHING"
    partial_sets = ", ".join(
        f"{ident(n)} = CASE WHEN {i} = ANY(s._keep) THEN t.{ident(n)} ELSE s.{ident(n)} END"
        for i, n in enumerate(all_names)
        if n not in key_names and n not in generated
    )
    stage_cols = ", ".join(f"{ident(n)} {column_types[n]}" for n in all_names)
    ddl = (
        f"CREATE TEMP TABLE IF NOT EXISTS {stage.removeprefix('pg_temp.')} "
        f'(_op "char", _keep int[], {stage_cols}) ON COMMIT DELETE ROWS'
    )
    shape = Shape(
        relation=relation,
        target=target,
        key_indexes=key_indexes,
        stage=stage,
        sql_delete=f"DELETE FROM {target.qualified} t USING {stage} s WHERE s._op = 'D' AND {keys_match}",
        sql_upsert=(
            # OVERRIDING SYSTEM VALUE: the source's ids go into GENERATED ALWAYS identity columns.
            f"INSERT INTO {target.qualified} ({cols}) OVERRIDING SYSTEM VALUE"
            f" SELECT {cols} FROM {stage} WHERE _op = 'U'"
            f" ON CONFLICT ({', '.join(ident(k) for k in key_names)}) {on_conflict}"
        ),
        # Direct COPY writes whole relation rows: not possible when some are generated here.
        sql_copy_direct="" if generated & set(all_names) else f"COPY {target.qualified} ({cols}) FROM STDIN",
        sql_partial=(
            f"UPDATE {target.qualified} t SET {partial_sets} FROM {stage} s"
            f" WHERE s._op = 'P' AND {keys_match}"
            if partial_sets
            else ""
        ),
        sql_partial_missing=(
            f"SELECT s._keep, {', '.join(f's.{ident(n)}::text' for n in all_names)} FROM {stage} s"
            f" WHERE s._op = 'P' AND NOT EXISTS (SELECT 1 FROM {target.qualified} t WHERE {keys_match})"
        ),
    )
    return shape, ddl


_ESCAPES = ((b"\\", b"\\\\"), (b"\t", b"\\t"), (b"\n", b"\\n"), (b"\r", b"\\r"))


def copy_value(value: Value) -> bytes:
    """One value in COPY text format (``\\N`` for NULL and for the unused columns of a delete)."""
    if value is None or value is UNCHANGED:
        return b"\\N"
    assert isinstance(value, bytes)
    if b"\\" in value or b"\t" in value or b"\n" in value or b"\r" in value:
        for raw, escaped in _ESCAPES:
            value = value.replace(raw, escaped)
    return value


def stage_rows(tb: TableBatch, *, direct_new: bool = False) -> tuple[bytes, list[bytes], int, int, int]:
    """COPY text for the staging table (``_op``, ``_keep``, columns...), and the op counts.

    With ``direct_new``, full rows of keys the batch inserted first come back separately as plain
    COPY lines for the target table itself (no staging, no ON CONFLICT).
    """
    width = len(tb.relation.columns)
    tabs = width - 1
    key_indexes = tb.key_indexes
    new_keys = tb.new_keys if direct_new else set()
    lines: list[bytes] = []
    direct: list[bytes] = []
    append = lines.append
    join = b"\t".join
    n_del = n_up = n_part = 0
    for key, entry in tb.entries.items():
        # Hot path: a full row of plain values. join() takes only bytes (a NULL or an unchanged
        # value raises TypeError), and on the joined row one C-level scan per special character
        # tells whether any value needs escaping (values hold no tab: exactly width - 1 of them).
        try:
            row = join(entry)  # type: ignore[arg-type]
        except TypeError:
            row = None
        if row is None or row.count(b"\t") != tabs or b"\\" in row or b"\n" in row or b"\r" in row:
            if entry is DELETED:
                values: list[bytes] = [b"\\N"] * width
                for i, k in zip(key_indexes, key, strict=True):
                    values[i] = copy_value(k)
                append(b"D\t\\N\t" + join(values) + b"\n")
                n_del += 1
                continue
            assert isinstance(entry, list)
            if UNCHANGED in entry:
                keep = ",".join(str(i) for i, v in enumerate(entry) if v is UNCHANGED).encode()
                append(b"P\t{" + keep + b"}\t" + join([copy_value(v) for v in entry]) + b"\n")
                n_part += 1
                continue
            row = join([copy_value(v) for v in entry])
        if key in new_keys:
            direct.append(row + b"\n")
        else:
            append(b"U\t\\N\t" + row + b"\n")
        n_up += 1
    return b"".join(lines), direct, n_del, n_up, n_part
