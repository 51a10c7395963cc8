"""Follow the source's column changes on the target while streaming, without losing a value.

A Relation message tells the stream a table's columns changed: names, type OIDs and modifiers,
nothing else. What actually happened on the source is read from its catalog, and the target is
changed so its rows end equal to the source's:

- **ADD COLUMN … DEFAULT x** is metadata-only on the source: old rows read ``x`` and the stream
  sends nothing for them. The target adds the column with the same *missing value*
  (``pg_attribute.attmissingval``, the default as evaluated when the column was added), so its
  old rows read ``x`` too; the column default itself is then set to the source's expression
  when the target can evaluate it.
- A new column whose old rows' values the stream cannot tell — a volatile default (the source
  rewrote the table; rewrites are not decoded), a **RENAME COLUMN** (the old name stays on the
  target as an orphan, the new name is new), a column the target lacked at start — is added
  empty and **backfilled** from the source's current values by key. Later changes in the stream
  carry the column too, so the target converges on the source; a row changed after the backfill
  read it is overwritten by the stream in order.
- **DROP COLUMN**: the target keeps the column and its data (zdtp never drops a column); if it is
  NOT NULL without default it becomes nullable so new rows can still be applied.
- **Type changes** follow :mod:`.type_change`: safe widenings are applied with
  ``ALTER COLUMN … TYPE``; time-zone dependent ones and opted-in lossy ones also backfill the
  column; anything else is refused with exit 65 naming the column and both types.
- **Generated columns** are never in the stream (pgoutput omits them before PG 18 and zdtp does
  not ask PG 18 to send them): the target must compute them itself. A source generated column
  missing on the target is added as generated; one the target has as a plain column is refused,
  since it would silently read NULL or stale values.

Everything runs on the target session inside the stream's open transaction, so it commits (or
rolls back) together with the changes and the applied LSN.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import psycopg

from zdtp_worker.contract.errors import DataError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.incremental.only import only
from zdtp_worker.incremental.type_change import classify
from zdtp_worker.pg.quoting import ident

log = logging.getLogger(__name__)

BACKFILL_ATTEMPTS = 5
BACKFILL_RETRY_SECONDS = 0.5

_SOURCE_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasmissing,
       a.attgenerated::text, a.attidentity::text,
       CASE WHEN a.atthasdef THEN pg_get_expr(d.adbin, d.adrelid) END
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""
_TARGET_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attgenerated::text, a.atthasdef
FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""


@dataclass(frozen=True)
class SourceColumn:
    name: str
    type_sql: str
    not_null: bool
    has_missing: bool  # old rows read a stored "missing value" (ADD COLUMN with a constant default)
    generated: str  # "" | "s" | "v"
    identity: str  # "" | "a" | "d"
    expr: str | None  # default, or generation expression


@dataclass(frozen=True)
class TargetColumn:
    name: str
    type_sql: str
    not_null: bool
    generated: str
    has_default: bool


def _catalog_path(conn: psycopg.Connection) -> None:
    """Deparse with every user object schema-qualified, so the text means the same on the target."""
    conn.execute("SET LOCAL search_path = pg_catalog")


def source_columns(conn: psycopg.Connection, table: TableName) -> dict[str, SourceColumn]:
    with conn.transaction():
        _catalog_path(conn)
        rows = conn.execute(_SOURCE_COLUMNS, (table.qualified,)).fetchall()
    return {r[0]: SourceColumn(r[0], r[1], bool(r[2]), bool(r[3]), r[4], r[5], r[6]) for r in rows}


def target_columns(conn: psycopg.Connection, table: TableName) -> dict[str, TargetColumn]:
    rows = conn.execute(_TARGET_COLUMNS, (table.qualified,)).fetchall()
    return {r[0]: TargetColumn(r[0], r[1], bool(r[2]), r[3], bool(r[4])) for r in rows}


def missing_value(conn: psycopg.Connection, table: TableName, col: SourceColumn) -> str | None:
    """The value old rows read for ``col`` (its ``attmissingval``) as a text literal's content."""
    row = conn.execute(
        f"SELECT ((attmissingval::text)::{col.type_sql}[])[1]::text FROM pg_attribute"
        " WHERE attrelid = %s::regclass AND attname = %s",
        (table.qualified, col.name),
    ).fetchone()
    return None if row is None else row[0]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass
class ColumnSync:
    """One stream's column follower: ``src`` and ``tgt`` are the stream's psycopg 3 sessions."""

    src: psycopg.Connection
    tgt: psycopg.Connection
    allow_lossy: bool = False
    started: dict[TableName, dict[str, str]] = field(default_factory=dict)

    def reconcile(
        self,
        *,
        source: TableName,
        target: TableName,
        published: list[tuple[str, str]],
        key: tuple[str, ...],
        first_sight: bool,
    ) -> list[str]:
        """Bring ``target``'s columns in line with the source; return what was done (for logs/metrics).

        ``published``: (name, type) of the columns the stream carries now. ``first_sight``: the
        worker has not seen this table's columns before in this run (at start, the target may
        lack columns for reasons the stream cannot tell, so new ones are always backfilled).
        """
        src_cols = source_columns(self.src, source)
        tgt_cols = target_columns(self.tgt, target)
        # The source's column types when this run first looked (the start-up check runs first).
        started = self.started.setdefault(source, {c.name: c.type_sql for c in src_cols.values()})
        names = {n for n, _ in published}
        done: list[str] = []
        orphans = [c for c in tgt_cols.values() if c.name not in names and c.name not in src_cols]
        for col in orphans:
            if col.not_null and not col.has_default and not col.generated:
                self.tgt.execute(
                    f"ALTER TABLE {target.qualified} ALTER COLUMN {ident(col.name)} DROP NOT NULL"
                )
                done.append(f"{col.name}: kept (dropped or renamed on the source), now nullable")
                log.warning(
                    "target %s: column %s no longer exists on the source; kept with its data, made nullable",
                    target,
                    col.name,
                )
        for name, type_sql in published:
            have = tgt_cols.get(name)
            src_col = src_cols.get(name)
            if have is None:
                done.append(
                    self._add(
                        source=source,
                        target=target,
                        name=name,
                        type_sql=type_sql,
                        src_col=src_col,
                        key=key,
                        fast_default_ok=not orphans and not first_sight,
                    )
                )
            elif (
                have.type_sql != type_sql
                and classify(type_sql, have.type_sql) == "widen"
                and (src_col is None or src_col.type_sql != type_sql or started.get(name) == type_sql)
            ):
                # The target already holds a wider type than these changes carry: a restarted
                # stream replays changes from before a widening the target followed at start
                # (the source's catalog has the wider type by now), or the target was wider
                # when the stream started (made so on purpose). A column the source's catalog
                # has narrowed since the start is different: the source's rewrite may have
                # changed values the stream never carries (numeric scale, timestamp precision),
                # so that is a type change like any other (below: exit 65 unless opted in).
                continue
            elif have.type_sql != type_sql:
                done.append(
                    self._retype(
                        source=source, target=target, name=name, old=have.type_sql, new=type_sql, key=key
                    )
                )
        for col in src_cols.values():
            if not col.generated or col.name in names:
                continue
            have = tgt_cols.get(col.name)
            if have is None:
                kind = "VIRTUAL" if col.generated == "v" else "STORED"
                self.tgt.execute(
                    f"ALTER TABLE {target.qualified} ADD COLUMN {ident(col.name)} {col.type_sql}"
                    f" GENERATED ALWAYS AS ({col.expr}) {kind}"
                )
                done.append(f"{col.name}: added as generated (computed on the target)")
            elif not have.generated:
                raise DataError(
                    f"column {col.name} of {target} is generated on the source but a plain column on"
                    " the target: the stream carries no generated values, so it would read NULL or"
                    f" stale values. Fix: recreate it on the target as GENERATED ALWAYS AS ({col.expr})"
                    " STORED (zdtp creates it so when it creates the table)"
                )
        return [d for d in done if d]

    # -- adding ----------------------------------------------------------------------------
    def _add(
        self,
        *,
        source: TableName,
        target: TableName,
        name: str,
        type_sql: str,
        src_col: SourceColumn | None,
        key: tuple[str, ...],
        fast_default_ok: bool,
    ) -> str:
        col_sql = f"ALTER TABLE {target.qualified} ADD COLUMN {ident(name)} {type_sql}"
        if src_col is None:
            # Gone again on the source by now: its values do not matter any more.
            self.tgt.execute(col_sql)
            return f"{name}: added (no longer on the source)"
        if src_col.has_missing and fast_default_ok:
            value = missing_value(self.src, source, src_col)
            if value is not None:
                not_null = " NOT NULL" if src_col.not_null else ""
                self.tgt.execute(f"{col_sql} DEFAULT {_literal(value)}::{type_sql}{not_null}")
                self._set_default(target, name, src_col)
                log.warning(
                    "target %s: added column %s %s; old rows read %r as on the source",
                    target,
                    name,
                    type_sql,
                    value,
                )
                return f"{name}: added, old rows read the source's default"
        self.tgt.execute(col_sql)
        rows = self.backfill(source=source, target=target, column=name, key=key)
        self._set_default(target, name, src_col)
        if src_col.not_null:
            self._try(f"ALTER TABLE {target.qualified} ALTER COLUMN {ident(name)} SET NOT NULL")
        log.warning(
            "target %s: added column %s %s and copied %d values from the source", target, name, type_sql, rows
        )
        return f"{name}: added, {rows} values copied from the source"

    def _set_default(self, target: TableName, name: str, col: SourceColumn) -> None:
        column = f"ALTER TABLE {target.qualified} ALTER COLUMN {ident(name)}"
        if col.expr is None or col.generated or col.identity:
            self.tgt.execute(f"{column} DROP DEFAULT")
        elif not self._try(f"{column} SET DEFAULT {col.expr}"):
            # The expression needs an object the target lacks: rows come from the stream anyway.
            self.tgt.execute(f"{column} DROP DEFAULT")

    def _try(self, statement: str) -> bool:
        self.tgt.execute("SAVEPOINT zdtp_ddl")
        try:
            self.tgt.execute(statement)
        except psycopg.errors.DatabaseError as exc:
            self.tgt.execute("ROLLBACK TO SAVEPOINT zdtp_ddl")
            log.info("target: %s skipped: %s", statement, str(exc).splitlines()[0])
            return False
        self.tgt.execute("RELEASE SAVEPOINT zdtp_ddl")
        return True

    # -- type changes ------------------------------------------------------------------------
    def _retype(
        self, *, source: TableName, target: TableName, name: str, old: str, new: str, key: tuple[str, ...]
    ) -> str:
        verdict = classify(old, new)
        where = f"column {name} of {target}"
        if verdict == "lossy" and not self.allow_lossy:
            raise DataError(
                f"{where} changed type on the source from {old} to {new}, which is not a safe widening"
                " (incompatible schema change: values could change); not applying. Set"
                " incremental.allow_lossy_type_changes: true to apply it to the target (values are"
                " then copied from the source), or re-run full+incremental"
            )
        if verdict != "widen" and name in key:
            raise DataError(
                f"{where} is part of the key and changed type from {old} to {new}: rows cannot be"
                " matched across that change; re-run full+incremental"
            )
        self.tgt.execute(
            f"ALTER TABLE {target.qualified} ALTER COLUMN {ident(name)} TYPE {new} USING {ident(name)}::{new}"
        )
        if verdict == "widen":
            log.warning(
                "target %s: widened column %s from %s to %s (as on the source)", target, name, old, new
            )
            return f"{name}: widened {old} -> {new}"
        rows = self.backfill(source=source, target=target, column=name, key=key, include_nulls=True)
        log.warning(
            "target %s: column %s changed from %s to %s; %d values copied from the source",
            target,
            name,
            old,
            new,
            rows,
        )
        return f"{name}: {old} -> {new}, {rows} values copied from the source"

    # -- backfill ------------------------------------------------------------------------------
    def backfill(
        self,
        *,
        source: TableName,
        target: TableName,
        column: str,
        key: tuple[str, ...],
        include_nulls: bool = False,
    ) -> int:
        """Copy ``column``'s current source values into the target rows with the same key."""
        # This table's rows only, not its inheritance children's, on both sides (see .only).
        tq, sq = only(self.tgt, target) + target.qualified, only(self.src, source) + source.qualified
        if self.tgt.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {tq})").fetchone() == (True,):
            return 0
        cols = [*key, column]
        select = ", ".join(ident(c) for c in cols)
        where = "" if include_nulls else f" WHERE {ident(column)} IS NOT NULL"
        stage = "zdtp_backfill"
        self.tgt.execute(f"DROP TABLE IF EXISTS pg_temp.{stage}")
        self.tgt.execute(
            f"CREATE TEMP TABLE {stage} ON COMMIT DROP AS"
            f" SELECT {select} FROM {target.qualified} WITH NO DATA"
        )
        for attempt in range(BACKFILL_ATTEMPTS):
            # One REPEATABLE READ snapshot for the existence probe and the copy. A table rewrite
            # on the source (ALTER COLUMN TYPE, a volatile default) is not MVCC-safe: a snapshot
            # taken just before it commits sees the table *empty*. A non-empty target facing an
            # empty source is therefore read again with a fresh snapshot before it is believed.
            with self.src.transaction():
                self.src.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                seen = self.src.execute(f"SELECT EXISTS (SELECT 1 FROM {sq})").fetchone()
                if seen == (True,) or attempt == BACKFILL_ATTEMPTS - 1:
                    with (
                        self.src.cursor().copy(f"COPY (SELECT {select} FROM {sq}{where}) TO STDOUT") as out,
                        self.tgt.cursor().copy(f"COPY {stage} ({select}) FROM STDIN") as into,
                    ):
                        for block in out:
                            into.write(block)
                    break
            time.sleep(BACKFILL_RETRY_SECONDS)
        match = " AND ".join(f"t.{ident(k)} = s.{ident(k)}" for k in key)
        cur = self.tgt.execute(
            f"UPDATE {tq} t SET {ident(column)} = s.{ident(column)} FROM {stage} s WHERE {match}"
        )
        self.tgt.execute(f"DROP TABLE {stage}")
        return cur.rowcount
