"""How a batch reaches a target table: the per-relation SQL (a :class:`Shape`) and the COPY text
of the staging table. Pure: builds text, runs nothing.

A batch is applied per table through a temporary staging table: one ``COPY`` of the compacted
entries, then at most three statements (``DELETE ... USING``, ``INSERT ... ON CONFLICT DO UPDATE``,
and an ``UPDATE`` for rows whose TOASTed columns did not change). Rows of keys the batch inserted
first can skip staging and go straight into the target with ``COPY``. Values stay in PostgreSQL's
text form from the source to the target (both sessions use the same settings, see ``pg.session``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from zdtp_worker.contract.spec import TableName
from zdtp_worker.incremental.batch import DELETED, TableBatch
from zdtp_worker.incremental.pgoutput import NULL_FIELD, UNCHANGED, Relation, Value
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
    # Staged full rows whose keys the target holds (the usual case of an update): a plain UPDATE
    # is cheaper than the upsert (no speculative insertion, no row lock WAL record); "" when
    # there is nothing to set (key-only tables).
    sql_update: str = ""
    only: str = ""  # "ONLY " for a plain target table (see .only): its inheritance children stay out
    # The target has unique indexes or exclusion constraints besides the key: a set-based UPDATE
    # may then collide with a row this same batch changes later (two rows swapping a unique
    # value), so the statements run under a savepoint and, on such a collision, the staged rows
    # are applied as delete-then-insert instead (see BatchWriter._apply): ``sql_park`` moves the
    # old versions into the ``old`` temporary table (created with the stage when set), then
    # ``sql_replace`` inserts the new ones.
    other_unique: bool = False
    old: str = ""
    sql_park: str = ""
    sql_replace: str = ""
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
    only: str = "",
    other_unique: bool = False,
) -> tuple[Shape, str]:
    """The relation's apply statements, and the DDL of its staging table (run it before use).

    ``generated``: columns the target computes itself; a publication that sends generated values
    (PG 18 ``publish_generated_columns``) still stages them, but they are never written.
    ``only``: ``"ONLY "`` when the target is a plain table (see :mod:`.only`).
    ``other_unique``: the target has unique/exclusion constraints besides the key (see Shape).
    """
    tq = only + target.qualified  # statements that read or change existing target rows
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
    # Target columns the source no longer has (kept with their data, see .column_sync).
    orphans = [n for n in column_types if n not in all_names and n not in generated]
    replaced = [
        f"s.{ident(n)}"
        if n in key_names
        else f"CASE WHEN s._op = 'P' AND {all_names.index(n)} = ANY(s._keep)"
        f" THEN t.{ident(n)} ELSE s.{ident(n)} END"
        for n in names
    ] + [f"t.{ident(n)}" for n in orphans]
    ddl = (
        f"CREATE TEMP TABLE IF NOT EXISTS {stage.removeprefix('pg_temp.')} "
        f'(_op "char", _keep int[], {stage_cols}) ON COMMIT DELETE ROWS'
    )
    old = f"{stage}_old" if other_unique and key_names else ""
    if old:  # the target's columns in its order, generated ones as plain columns
        ddl += (
            f"; CREATE TEMP TABLE IF NOT EXISTS {old.removeprefix('pg_temp.')}"
            f" (LIKE {target.qualified}) ON COMMIT DELETE ROWS"
        )
    shape = Shape(
        relation=relation,
        target=target,
        key_indexes=key_indexes,
        stage=stage,
        only=only,
        sql_delete=f"DELETE FROM {tq} t USING {stage} s WHERE s._op = 'D' AND {keys_match}",
        sql_upsert=(
            # OVERRIDING SYSTEM VALUE: the source's ids go into GENERATED ALWAYS identity columns.
            f"INSERT INTO {target.qualified} ({cols}) OVERRIDING SYSTEM VALUE"
            f" SELECT {cols} FROM {stage} WHERE _op = 'U'"
            f" ON CONFLICT ({', '.join(ident(k) for k in key_names)}) {on_conflict}"
        ),
        sql_update=(
            f"UPDATE {tq} t SET "
            + ", ".join(f"{ident(n)} = s.{ident(n)}" for n in non_key)
            + f" FROM {stage} s WHERE s._op = 'U' AND {keys_match}"
            if non_key
            else ""
        ),
        # Direct COPY writes whole relation rows: not possible when some are generated here.
        sql_copy_direct="" if generated & set(all_names) else f"COPY {target.qualified} ({cols}) FROM STDIN",
        sql_partial=(
            f"UPDATE {tq} t SET {partial_sets} FROM {stage} s WHERE s._op = 'P' AND {keys_match}"
            if partial_sets
            else ""
        ),
        other_unique=other_unique,
        # Delete-then-insert in two statements, so every old version is gone before the first
        # new one goes in (one statement with a data-modifying CTE gives no such order). Partial
        # rows take their unchanged values, and every row its orphan columns, from its old
        # version; a partial row whose key the target lacks is left out (sql_partial_missing
        # completes it). A brand-new key's orphan columns read NULL here, not their default.
        old=old,
        sql_park=(
            f"WITH old AS (DELETE FROM {tq} t USING {stage} s WHERE s._op IN ('U', 'P') AND {keys_match}"
            f" RETURNING t.*) INSERT INTO {old} SELECT * FROM old"
            if old
            else ""
        ),
        sql_replace=(
            f"INSERT INTO {target.qualified} ({', '.join(ident(n) for n in names + orphans)})"
            f" OVERRIDING SYSTEM VALUE SELECT {', '.join(replaced)}"
            f" FROM {stage} s LEFT JOIN {old} t ON {keys_match}"
            f" WHERE s._op = 'U' OR (s._op = 'P' AND t.{ident(key_names[0])} IS NOT NULL)"
            if old
            else ""
        ),
        sql_partial_missing=(
            f"SELECT s._keep, {', '.join(f's.{ident(n)}::text' for n in all_names)} FROM {stage} s"
            f" WHERE s._op = 'P' AND NOT EXISTS (SELECT 1 FROM {tq} t WHERE {keys_match})"
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
    COPY lines for the target table itself (no staging, no ON CONFLICT). Lines come in no
    particular order: keys are unique in a batch and the apply statements are set-based.
    """
    width = len(tb.relation.columns)
    key_indexes = tb.key_indexes
    new_keys = tb.new_keys if direct_new else ()
    join = b"\t".join
    upserts: list[bytes] = []  # full rows, columns only: the _op/_keep prefix is added below
    direct: list[bytes] = []
    others: list[bytes] = []  # complete staging lines of deletes and partial rows
    nulls = n_del = n_part = 0
    for key, entry in tb.entries.items():
        # The hot path is one join per row; join() takes only bytes, so a NULL, an unchanged value
        # or a delete raises TypeError and takes the branch below.
        try:
            row = join(entry)  # type: ignore[arg-type]
        except TypeError:
            if entry is DELETED:
                values: list[bytes] = [b"\\N"] * width
                for i, k in zip(key_indexes, key, strict=True):
                    values[i] = copy_value(k)
                others.append(b"D\t\\N\t" + join(values) + b"\n")
                n_del += 1
                continue
            assert isinstance(entry, list)
            if UNCHANGED in entry:
                keep = ",".join(str(i) for i, v in enumerate(entry) if v is UNCHANGED).encode()
                others.append(b"P\t{" + keep + b"}\t" + join([copy_value(v) for v in entry]) + b"\n")
                n_part += 1
                continue
            row = join([b"\\N" if v is None else v for v in entry])  # type: ignore[misc]
            nulls += entry.count(None)
        (direct if key in new_keys else upserts).append(row)
    text_up, text_direct = b"\n".join(upserts), b"\n".join(direct)
    # One C-level scan per character over the whole batch tells whether any value needs escaping:
    # then tabs are exactly the separators, newlines exactly the row ends, and the backslashes
    # exactly those of the NULLs written as \N above.
    rows = len(upserts) + len(direct)
    clean = (
        text_up.count(b"\t") + text_direct.count(b"\t") == rows * (width - 1)
        and text_up.count(b"\n") + text_direct.count(b"\n")
        == max(len(upserts) - 1, 0) + max(len(direct) - 1, 0)
        and text_up.count(b"\\") + text_direct.count(b"\\") == nulls
        and b"\r" not in text_up
        and b"\r" not in text_direct
    )
    if not clean:  # rare: some value holds a tab, newline, CR or backslash; escape value by value
        upserts, direct = [], []
        for key, entry in tb.entries.items():
            if entry is DELETED or UNCHANGED in entry:  # type: ignore[operator]
                continue
            (direct if key in new_keys else upserts).append(join([copy_value(v) for v in entry]))  # type: ignore[union-attr]
        text_up, text_direct = b"\n".join(upserts), b"\n".join(direct)
    # Escaped text holds no raw newline but the row ends, so the prefix goes in with one replace.
    data = b"U\t\\N\t" + text_up.replace(b"\n", b"\nU\t\\N\t") + b"\n" if upserts else b""
    direct_lines = (text_direct + b"\n").splitlines(keepends=True) if direct else []
    return data + b"".join(others), direct_lines, n_del, len(upserts) + len(direct), n_part


# -- binary mode (see .binary_mode): rows as binary COPY, values already COPY fields ----------
COPY_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_BINARY_TRAILER = b"\xff\xff"
_I16 = struct.Struct("!h")
_OP_U, _OP_D, _OP_P = (b"\x00\x00\x00\x01" + op for op in (b"U", b"D", b"P"))  # "char" fields


def binary_copy(rows: bytes) -> bytes:
    """A whole binary COPY stream around ``rows`` (each: field count, then its fields)."""
    return COPY_BINARY_HEADER + rows + COPY_BINARY_TRAILER


def _keep_array(indexes: list[int]) -> bytes:
    """``_keep`` (int4[] of the unchanged columns' positions) as one binary COPY field. The array
    format names its element type by OID: int4's (23) is the same in every database."""
    body = struct.pack(
        f"!iiiii{2 * len(indexes)}i", 1, 0, 23, len(indexes), 1, *[x for i in indexes for x in (4, i)]
    )
    return struct.pack("!i", len(body)) + body


def staged_upsert_prefix(width: int) -> bytes:
    """What turns a direct row (field count + fields) into a staged upsert row, after its count."""
    return _I16.pack(width + 2) + _OP_U + NULL_FIELD


def stage_rows_binary(
    tb: TableBatch, *, direct_new: bool = False
) -> tuple[bytes, list[bytes], int, int, int]:
    """:func:`stage_rows` for a binary-mode stream: the staging rows as binary COPY rows (no
    header or trailer: :func:`binary_copy` adds them), the direct rows likewise. Values are already
    COPY fields, so a row is one join and nothing needs escaping."""
    width = len(tb.relation.columns)
    key_indexes = tb.key_indexes
    new_keys = tb.new_keys if direct_new else ()
    join = b"".join
    prefix_u = staged_upsert_prefix(width)
    count_direct = _I16.pack(width)
    count_staged = _I16.pack(width + 2)
    upserts: list[bytes] = []
    direct: list[bytes] = []
    n_del = n_part = 0
    for key, entry in tb.entries.items():
        try:
            row = join(entry)  # type: ignore[arg-type]
        except TypeError:  # a delete, or a partial row (an UNCHANGED marker)
            if entry is DELETED:
                values: list[bytes] = [NULL_FIELD] * width
                for i, k in zip(key_indexes, key, strict=True):
                    values[i] = k  # type: ignore[assignment]
                upserts.append(count_staged + _OP_D + NULL_FIELD + join(values))
                n_del += 1
                continue
            assert isinstance(entry, list)
            keep = [i for i, v in enumerate(entry) if v is UNCHANGED]
            fields = [NULL_FIELD if v is UNCHANGED else v for v in entry]
            upserts.append(count_staged + _OP_P + _keep_array(keep) + join(fields))  # type: ignore[arg-type]
            n_part += 1
            continue
        if key in new_keys:
            direct.append(count_direct + row)
        else:
            upserts.append(prefix_u + row)
    n_up = len(upserts) - n_del - n_part + len(direct)
    return join(upserts), direct, n_del, n_up, n_part
