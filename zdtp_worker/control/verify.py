"""Compare tables source vs target after a copy: row counts, or counts and checksums.

One REPEATABLE READ READ ONLY transaction per side, so a table is not measured mid-way through a
commit. A table missing on the target is reported with ``target_rows = -1``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import psycopg

from zdtp_worker.contract.identifiers import parse_qualified
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
