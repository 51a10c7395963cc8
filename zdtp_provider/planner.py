"""Plan a sync run: which workers to start and what each copies.

Two halves: :func:`read_catalog` asks the source for tables, row estimates and primary-key bounds
(the only I/O here, cheap catalog and index reads); :func:`plan_workers` is pure and turns those
estimates into balanced :class:`~zdtp_worker.contract.spec.WorkerSpec` units. Large tables with a single
integer key are split into key ranges so one huge table does not serialise the run; everything
is then packed largest-first onto at most ``workers`` workers. The worker splits its units into
resumable chunks itself, so the plan only needs to be roughly balanced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import psycopg

from zdtp_provider.config import SyncTaskConfig
from zdtp_worker.contract.spec import FullOptions, KeyRange, TableSpec, WorkerSpec

INTEGER_TYPES = frozenset({"smallint", "integer", "bigint"})


class PlanningError(ValueError):
    """The catalog does not allow the configured sync (message names table and reason)."""


@dataclass(frozen=True)
class TableEstimate:
    name: str  # schema.table
    rows: int
    bytes: int
    pk: tuple[str, ...]
    int_pk_min: int | None = None  # set when the PK is one integer column
    int_pk_max: int | None = None


@dataclass(frozen=True)
class Unit:
    """A piece of work: a whole table or one key range of it, with its estimated rows."""

    table: str
    rows: int
    key_range: KeyRange | None = None


_CATALOG_SQL = """
SELECT n.nspname || '.' || c.relname, greatest(c.reltuples, 0)::bigint, pg_table_size(c.oid),
       coalesce((SELECT array_agg(a.attname ORDER BY k.ord)
                 FROM pg_index i
                 CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                 WHERE i.indrelid = c.oid AND i.indisprimary), '{}'),
       (SELECT format_type(a.atttypid, NULL) FROM pg_index i
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
         WHERE i.indrelid = c.oid AND i.indisprimary AND i.indnkeyatts = 1)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'zdtp') AND n.nspname NOT LIKE 'pg_toast%'
"""


def read_catalog(dsn: str, config: SyncTaskConfig) -> list[TableEstimate]:
    """Estimates for the tables ``config`` selects; PlanningError for a missing explicit table."""
    with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
        rows = conn.execute(_CATALOG_SQL).fetchall()
        by_name = {r[0]: r for r in rows}
        missing = [t for t in config.tables if t not in by_name]
        if missing:
            raise PlanningError(f"source has no table {', '.join(missing)} (sync task {config.name!r})")
        estimates = []
        for name in config.select_tables(list(by_name)):
            _, reltuples, size, pk, pk_type = by_name[name]
            rows_est = int(reltuples)
            if rows_est == 0:
                # Never analysed (reltuples -1 → 0) or small: an exact count is cheap enough.
                schema, table = name.split(".", 1)
                rows_est = conn.execute(
                    psycopg.sql.SQL("SELECT count(*) FROM {}.{}").format(
                        psycopg.sql.Identifier(schema), psycopg.sql.Identifier(table)
                    )
                ).fetchone()[0]
            lo = hi = None
            if len(pk) == 1 and pk_type in INTEGER_TYPES:
                schema, table = name.split(".", 1)
                lo, hi = conn.execute(
                    psycopg.sql.SQL("SELECT min({k}), max({k}) FROM {s}.{t}").format(
                        k=psycopg.sql.Identifier(pk[0]),
                        s=psycopg.sql.Identifier(schema),
                        t=psycopg.sql.Identifier(table),
                    )
                ).fetchone()
            estimates.append(TableEstimate(name, rows_est, int(size), tuple(pk), lo, hi))
        return estimates


def split_units(estimates: list[TableEstimate], *, workers: int, allow_split: bool) -> list[Unit]:
    """Whole tables, except big single-integer-key tables cut into equal key ranges."""
    total = sum(e.rows for e in estimates)
    share = max(1, math.ceil(total / workers))
    units: list[Unit] = []
    for est in estimates:
        splittable = allow_split and est.int_pk_min is not None and est.int_pk_max is not None
        pieces = min(workers, math.ceil(est.rows / share)) if splittable else 1
        if pieces <= 1:
            units.append(Unit(est.name, est.rows))
            continue
        lo, hi = est.int_pk_min, est.int_pk_max + 1
        step = math.ceil((hi - lo) / pieces)
        for i in range(pieces):
            start, stop = lo + i * step, min(hi, lo + (i + 1) * step)
            if start >= stop:
                break
            # Outer pieces are open so rows beyond the planned extent are still copied (the
            # worker bounds its own chunks when it starts).
            key_range = KeyRange(lower=None if i == 0 else [start], upper=None if stop >= hi else [stop])
            units.append(Unit(est.name, est.rows // pieces, key_range))
    return units


def pack(units: list[Unit], *, workers: int) -> list[list[Unit]]:
    """Largest-first onto the least-loaded worker; drops workers that got nothing."""
    bins: list[list[Unit]] = [[] for _ in range(max(1, min(workers, len(units))))]
    loads = [0] * len(bins)
    for unit in sorted(units, key=lambda u: (-u.rows, u.table)):
        i = loads.index(min(loads))
        bins[i].append(unit)
        loads[i] += max(unit.rows, 1)
    return [b for b in bins if b]


def plan_workers(
    config: SyncTaskConfig,
    estimates: list[TableEstimate],
    *,
    run_id: str,
    workers: int | None = None,
) -> list[WorkerSpec]:
    """One full-sync WorkerSpec per worker, balanced by estimated rows."""
    if not estimates:
        raise PlanningError(f"sync task {config.name!r} selects no tables from the source")
    n = workers or config.workers
    # Swap mode replaces a whole table in one transaction: one worker must own each table.
    units = split_units(estimates, workers=n, allow_split=config.copy_mode != "swap")
    options = FullOptions(copy_mode=config.copy_mode, chunk_rows=config.chunk_rows, verify=config.verify)
    specs = []
    for i, bucket in enumerate(pack(units, workers=n)):
        tables = [TableSpec(source=u.table, key_range=u.key_range) for u in bucket]
        specs.append(
            WorkerSpec(
                mode="full", task=config.name, run_id=run_id, worker=f"w{i}", tables=tables, full=options
            )
        )
    return specs
