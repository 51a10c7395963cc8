"""Verify a copy: from the evidence its chunks recorded (:func:`verify_run`, what the DAG's
``verify`` task runs), or by comparing tables live, source vs target (:func:`compare_tables`).

:func:`verify_run` never reads the source, so writes on the source during or after the copy do
not matter. In one REPEATABLE READ READ ONLY transaction on the target it checks, per table of
the run: the parts of the table that the run planned cover its whole key space, each part's
stored chunk plan leaves no gap (delete ranges tile the part, read ranges chain), every planned
chunk has its record in ``zdtp.full_chunks``, each record's pair is equal — at ``count`` the rows
the source sent and the target stored, at ``checksum`` also the source checksum (taken under the
snapshot that read the chunk) and the target checksum (taken in the transaction that wrote it) —
and the target table now holds exactly the recorded rows: its row count (and at ``checksum`` its
checksum, computed like the chunks') equals the sums over the records, so nothing changed the
target after a chunk committed and no row sits outside every chunk. (The target is quiet then:
in ``full+incremental`` the stream starts after ``verify``.) ``none`` checks nothing. Each verify
is recorded in ``zdtp.verify_log``.

:func:`compare_tables`: one REPEATABLE READ READ ONLY transaction per side, so a table is not
measured mid-way through a commit; only meaningful when the source is quiet. A table missing on
the target is reported with ``target_rows = -1``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

import psycopg

from zdtp_worker.contract.identifiers import parse_qualified
from zdtp_worker.control import row_checksum, verify_log
from zdtp_worker.control.catalog import column_names
from zdtp_worker.control.session import connect
from zdtp_worker.pg.checksum import checksum_sql, format_checksum
from zdtp_worker.pg.quoting import qualified

_SNAPSHOT = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"


@dataclass(frozen=True)
class TableComparison:
    table: str
    source_rows: int
    target_rows: int
    source_checksum: str | None = None
    target_checksum: str | None = None

    @property
    def equal(self) -> bool:
        return self.source_rows == self.target_rows and self.source_checksum == self.target_checksum

    def to_dict(self) -> dict:
        return {**asdict(self), "equal": self.equal}


def measure(conn: psycopg.Connection, table: str, *, level: str) -> tuple[int, str | None]:
    """(rows, checksum or None) of ``schema.table`` at ``level`` ``count`` or ``checksum``."""
    schema, name = parse_qualified(table)  # canonical names: any identifier, dots included
    table_sql = qualified(schema, name)
    if level == "count":
        return conn.execute(f"SELECT count(*) FROM {table_sql}").fetchone()[0], None
    rows, total = conn.execute(checksum_sql(table_sql, column_names(conn, table_sql))).fetchone()
    return rows, format_checksum(total)


def compare_tables(
    *, source_dsn: str, target_dsn: str, tables: list[str], level: str
) -> list[TableComparison]:
    """Counts (level 'count') or counts + checksums ('checksum') of each table on both sides."""
    if level == "none" or not tables:
        return []
    out = []
    # Autocommit sessions with an explicit BEGIN: the isolation level must be the transaction's
    # first statement (psycopg's implicit BEGIN would come first and make it a no-op).
    src = connect(source_dsn, role="source", application_name="zdtp-verify")
    try:
        tgt = connect(target_dsn, role="target", application_name="zdtp-verify")
    except BaseException:
        src.close()
        raise
    try:
        src.execute(_SNAPSHOT)
        tgt.execute(_SNAPSHOT)
        for table in tables:
            s_rows, s_sum = measure(src, table, level=level)
            try:
                t_rows, t_sum = measure(tgt, table, level=level)
            except psycopg.errors.UndefinedTable:
                tgt.execute("ROLLBACK")
                tgt.execute(_SNAPSHOT)
                t_rows, t_sum = -1, None
            out.append(TableComparison(table, s_rows, t_rows, s_sum, t_sum))
    finally:
        src.close()
        tgt.close()
    return out


# ---------------------------------------------------------------------------------------------
# verify_run: the recorded evidence of a run

# Problems listed per table before the rest is only counted (a run of 10,000 chunks all missing).
_MAX_LISTED = 5


@dataclass
class TableVerification:
    """What the run recorded for one target table, and what is wrong with it (``problems``)."""

    table: str
    chunks: int = 0  # planned, over all parts
    recorded: int = 0  # with a record in zdtp.full_chunks
    source_rows: int = 0  # sums over the records
    target_rows: int = 0
    live_rows: int | None = None  # the target table now
    source_checksum: str | None = None
    target_checksum: str | None = None
    live_checksum: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class RunVerification:
    task: str
    run_id: str
    level: str
    tables: list[TableVerification]

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)

    @property
    def problems(self) -> list[str]:
        return [f"{t.table}: {p}" for t in self.tables for p in t.problems]

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "run_id": self.run_id,
            "level": self.level,
            "ok": self.ok,
            "tables": [t.to_dict() for t in self.tables],
        }


class _Listed:
    """Collects one kind of problem, naming the first few and counting the rest."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.items: list[str] = []

    def add(self, item: str) -> None:
        self.items.append(item)

    def into(self, problems: list[str]) -> None:
        if self.items:
            shown = "; ".join(self.items[:_MAX_LISTED])
            more = f"; and {len(self.items) - _MAX_LISTED} more" if len(self.items) > _MAX_LISTED else ""
            problems.append(f"{len(self.items)} chunk(s) {self.what}: {shown}{more}")


def _chunk_name(chunk: dict[str, Any], part: str) -> str:
    where = f" of part {part}" if part else ""
    return f"chunk {chunk['no']}{where} keys {row_checksum.describe_range(chunk)}"


def _check_table(conn: psycopg.Connection, run_id: str, table: str, level: str) -> TableVerification:
    out = TableVerification(table)
    plans = conn.execute(
        "SELECT part, chunks, checksum_columns, copy_table, swapped_at IS NOT NULL AS swapped"
        " FROM zdtp.full_plans WHERE run_id = %s AND target_table = %s ORDER BY part",
        (run_id, table),
    ).fetchall()
    if not plans:
        out.problems.append(f"run {run_id} recorded no chunk plan for it (the copy did not run for it)")
        return out
    parts = [p[0] for p in plans]
    if not row_checksum.covers_all([row_checksum.part_bounds(p) for p in parts]):
        out.problems.append(f"the recorded parts do not cover the whole table: {parts}")
    missing, differ, unchecked = _Listed("have no record"), _Listed("differ"), _Listed("were not checked")
    sum_cols: list[row_checksum.SumColumn] | None = None
    src_sum = tgt_sum = Decimal(0)
    for part, chunks, cols, copy_table, swapped in plans:
        chunks = json.loads(chunks) if isinstance(chunks, str) else chunks
        sum_cols = sum_cols or row_checksum.from_json(cols)
        out.chunks += len(chunks)
        out.problems += [
            f"plan{f' of part {part}' if part else ''}: {g}" for g in row_checksum.plan_gaps(chunks, part)
        ]
        if copy_table != table and not swapped:
            out.problems.append(f"staging table {copy_table} was not swapped in")
        records = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT chunk_no, rows, source_rows, source_checksum, target_checksum, verify"
                " FROM zdtp.full_chunks WHERE run_id = %s AND target_table = %s AND part = %s",
                (run_id, table, part),
            ).fetchall()
        }
        for chunk in chunks:
            name = _chunk_name(chunk, part)
            record = records.pop(chunk["no"], None)
            if record is None:
                missing.add(name)
                continue
            rows, source_rows, s_sum, t_sum, checked_at = record
            out.recorded += 1
            out.target_rows += rows
            out.source_rows += source_rows or 0
            if source_rows is None:
                # verify: none, or a worker image from before recorded pairs (upgrade mid-run).
                unchecked.add(f"{name} (recorded without the source's row count: copied at verify none?)")
            elif source_rows != rows:
                differ.add(f"{name}: source sent {source_rows} rows, target stored {rows}")
            if level == "checksum":
                if s_sum is None or t_sum is None:
                    unchecked.add(
                        f"{name} (no checksums recorded: copied at verify {checked_at or 'unknown'})"
                    )
                else:
                    src_sum += s_sum
                    tgt_sum += t_sum
                    if s_sum != t_sum:
                        differ.add(
                            f"{name}: checksum {format_checksum(s_sum)} (source) "
                            f"vs {format_checksum(t_sum)} (target)"
                        )
        if records:
            out.problems.append(
                f"records of chunks not in the plan{f' of part {part}' if part else ''}: {sorted(records)}"
            )
    missing.into(out.problems)
    differ.into(out.problems)
    unchecked.into(out.problems)
    if level == "checksum":
        out.source_checksum, out.target_checksum = format_checksum(src_sum), format_checksum(tgt_sum)
    _check_live(conn, out, table, level, sum_cols)
    return out


def _check_live(
    conn: psycopg.Connection,
    out: TableVerification,
    table: str,
    level: str,
    sum_cols: list[row_checksum.SumColumn] | None,
) -> None:
    """The target table now must hold exactly the rows the records describe."""
    schema, name = parse_qualified(table)
    table_sql = qualified(schema, name)
    try:
        if level == "checksum":
            cols = sum_cols or [(c, None) for c in column_names(conn, table_sql)]
            rows, total = conn.execute(row_checksum.checksum_select(table_sql, cols)).fetchone()
            out.live_checksum = format_checksum(total)
        else:
            rows = conn.execute(f"SELECT count(*) FROM {table_sql}").fetchone()[0]
    except psycopg.errors.UndefinedTable:
        out.problems.append("the target table does not exist")
        return
    out.live_rows = int(rows)
    if out.live_rows != out.target_rows:
        out.problems.append(
            f"the target table holds {out.live_rows} rows, the run's chunks stored {out.target_rows} "
            "(rows changed after the copy, or lie outside every chunk)"
        )
    elif level == "checksum" and out.live_checksum != out.target_checksum:
        out.problems.append(
            f"the target table's checksum {out.live_checksum} differs from its chunks' {out.target_checksum} "
            "(rows changed after the copy)"
        )


def check_run(
    conn: psycopg.Connection, *, run_id: str, tables: list[str], level: str
) -> list[TableVerification]:
    """The checks of :func:`verify_run` on an open target session (one snapshot for all tables)."""
    conn.execute(_SNAPSHOT)
    try:
        if conn.execute("SELECT to_regclass('zdtp.full_plans') IS NULL").fetchone()[0]:
            return [
                TableVerification(t, problems=["no copy recorded: the target has no zdtp.full_plans"])
                for t in tables
            ]
        return [_check_table(conn, run_id, t, level) for t in tables]
    finally:
        conn.execute("ROLLBACK")


def record(conn: psycopg.Connection, result: RunVerification) -> None:
    """Append ``result`` to ``zdtp.verify_log`` (created if missing)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('zdtp:bootstrap'))")
        conn.execute("CREATE SCHEMA IF NOT EXISTS zdtp")
        conn.execute(verify_log.DDL)
        detail = {"tables": [t.to_dict() for t in result.tables], "problems": result.problems[:50]}
        conn.execute(
            "INSERT INTO zdtp.verify_log (task, run_id, level, ok, detail)"
            " VALUES (%s, %s, %s, %s, %s::jsonb)",
            (result.task, result.run_id, result.level, result.ok, json.dumps(detail)),
        )


def verify_run(*, target_dsn: str, task: str, run_id: str, tables: list[str], level: str) -> RunVerification:
    """Check run ``run_id`` of ``task`` from what its chunks recorded (module docstring) and log
    the outcome in ``zdtp.verify_log``. ``tables``: the run's target tables. Level ``none`` checks
    nothing and touches no database."""
    if level == "none" or not tables:
        return RunVerification(task, run_id, level, [])
    conn = connect(target_dsn, role="target", application_name="zdtp-verify")
    try:
        result = RunVerification(
            task, run_id, level, check_run(conn, run_id=run_id, tables=tables, level=level)
        )
        record(conn, result)
    finally:
        conn.close()
    return result
