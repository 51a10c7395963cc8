"""Database-side steps of a sync run that happen on the Airflow worker, not in a pod.

- :func:`source_tables` — catalog estimates for planning (delegates to the planner).
- :func:`compare_tables` — after the copy: row counts (or checksums) source vs target.
- :func:`prepare_stream` — before a full+incremental copy: publication and logical slot, so every
  change after this point is retained for the incremental worker.

The hand-off for ``full+incremental``: the slot is created *before* the parallel copy starts and
the incremental worker only starts *after* the copy finished. Changes committed between the slot
and a chunk's snapshot are therefore both in the copy and in the stream; the worker applies them
as upserts/deletes keyed by primary key in commit order, which converges to the source (no gap,
no duplicate row). One exported snapshot shared by N pods would need a connection held open
across tasks — fragile under Airflow retries — so zdtp trades it for idempotent replay.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import psycopg
from psycopg import sql

from zdtp_provider.config import SyncTaskConfig
from zdtp_worker.contract.spec import WorkerSpec
from zdtp_worker.full.pg import SESSION_SETTINGS
from zdtp_worker.full.verify import checksum_sql, format_checksum
from zdtp_worker.incremental import source as cdc_source
from zdtp_worker.incremental.names import publication_name, slot_name

_SETTINGS = {k: v for k, v in SESSION_SETTINGS.items() if k != "application_name"}


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


def _connect(dsn: str) -> psycopg.Connection:
    conn = psycopg.connect(dsn, connect_timeout=10, autocommit=True, application_name="zdtp-airflow")
    for key, value in _SETTINGS.items():
        conn.execute(sql.SQL("SELECT set_config({}, {}, false)").format(sql.Literal(key), sql.Literal(value)))
    return conn


def _measure(conn: psycopg.Connection, table: str, *, level: str) -> tuple[int, str | None]:
    schema, name = table.split(".", 1)
    qualified = f"{sql.Identifier(schema).as_string(conn)}.{sql.Identifier(name).as_string(conn)}"
    if level == "count":
        return conn.execute(f"SELECT count(*) FROM {qualified}").fetchone()[0], None
    columns = [
        r[0]
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
            " AND NOT attisdropped ORDER BY attnum",
            (qualified,),
        ).fetchall()
    ]
    rows, total = conn.execute(checksum_sql(qualified, columns)).fetchone()
    return rows, format_checksum(total)


def compare_tables(
    *, source_dsn: str, target_dsn: str, tables: list[str], level: str
) -> list[TableComparison]:
    """Counts (level 'count') or counts + checksums ('checksum') of each table on both sides."""
    if level == "none" or not tables:
        return []
    out = []
    with _connect(source_dsn) as src, _connect(target_dsn) as tgt:
        # One snapshot per side, so a table is not measured mid-way through a commit.
        src.autocommit = tgt.autocommit = False
        src.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        tgt.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        for table in tables:
            s_rows, s_sum = _measure(src, table, level=level)
            try:
                t_rows, t_sum = _measure(tgt, table, level=level)
            except psycopg.errors.UndefinedTable:
                tgt.rollback()
                tgt.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                t_rows, t_sum = -1, None
            out.append(TableComparison(table, s_rows, t_rows, s_sum, t_sum))
    return out


def planned_tables(specs: list[WorkerSpec]) -> list[str]:
    """Distinct source tables of a plan, in plan order (a split table appears once)."""
    seen: dict[str, None] = {}
    for spec in specs:
        for table in spec.tables:
            seen.setdefault(str(table.source), None)
    return list(seen)


def prepare_stream(*, source_dsn: str, config: SyncTaskConfig, tables: list[str]) -> dict[str, str]:
    """Check the source for CDC, then create the task's publication and slot if missing.

    The same pre-flight checks and idempotent set-up the incremental worker runs at start, so a
    source that cannot stream fails here, before any data is copied.
    """
    spec = WorkerSpec(
        mode="incremental", task=config.name, run_id="prepare", tables=[{"source": t} for t in tables]
    )
    names = [t.source for t in spec.tables]
    conn = cdc_source.connect(source_dsn)
    try:
        cdc_source.check_source(conn, names)
        cdc_source.ensure_publication(conn, publication_name(spec), names)
        cdc_source.ensure_slot(conn, slot_name(spec))
    finally:
        conn.close()
    return {"slot": slot_name(spec), "publication": publication_name(spec)}
