"""Plan a sync run: which workers to start and what each copies.

Two halves: :func:`read_catalog` asks the source for tables, row estimates and key bounds
(the only I/O here, cheap catalog and index reads); :func:`plan_workers` is pure and turns those
estimates into balanced :class:`~zdtp_worker.contract.spec.WorkerSpec` units. Large tables with a single
integer key are split into key ranges so one huge table does not serialise the run; everything
is then packed largest-first onto at most ``workers`` workers. The worker splits its units into
resumable chunks itself, so the plan only needs to be roughly balanced.

Every table gets a chunk key here, not in the worker: the primary key, else a unique index on
NOT NULL columns (it identifies every row just as well), else none — the table is copied as one
chunk and the plan says so (:attr:`TableEstimate.note`). Tables zdtp cannot reproduce are refused
here, all at once, before any worker starts. Names are canonical
(:mod:`zdtp_worker.contract.identifiers`), so any identifier plans like a plain one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import psycopg

from zdtp_provider.auto_streams import choose_streams, worker_cpu
from zdtp_provider.config import SyncTaskConfig
from zdtp_provider.relation_kinds import not_tables
from zdtp_worker.contract.identifiers import parse_qualified, render_qualified
from zdtp_worker.contract.spec import FullOptions, KeyRange, TableSpec, WorkerSpec
from zdtp_worker.control import replica_identity, source_check
from zdtp_worker.control.target_check import target_problems

INTEGER_TYPES = frozenset({"smallint", "integer", "bigint"})


class PlanningError(ValueError):
    """The catalog does not allow the configured sync (message names table and reason)."""


@dataclass(frozen=True)
class TableEstimate:
    name: str  # canonical schema.table (zdtp_worker.contract.identifiers)
    rows: int
    bytes: int
    pk: tuple[str, ...]  # the key chunks are cut by: the primary key, else key_index's columns
    int_pk_min: int | None = None  # set when that key is one integer column
    int_pk_max: int | None = None
    key_index: str | None = None  # no primary key: the NOT NULL unique index used as the key

    @property
    def note(self) -> str | None:
        """What the plan says about a table without a primary key (None when it has one)."""
        if self.key_index:
            return f"no primary key: chunked by NOT NULL unique index {self.key_index} ({', '.join(self.pk)})"
        if not self.pk:
            return "no primary key or NOT NULL unique index: copied as one chunk (a retry recopies it whole)"
        return None


@dataclass(frozen=True)
class Unit:
    """A piece of work: a whole table or one key range of it, with its estimated rows."""

    table: str
    rows: int
    key_range: KeyRange | None = None


# Tables (not partitions: a partitioned table is copied through its parent) with their row
# estimate, size and chunk key: the primary key, else the NOT NULL unique index with the fewest
# columns (no predicate, no expressions: it identifies every row), else none.
_CATALOG_SQL = """
SELECT n.nspname, c.relname, greatest(c.reltuples, 0)::bigint,
       CASE WHEN c.relkind = 'p' THEN coalesce((SELECT sum(pg_table_size(p.relid))::bigint
                                                FROM pg_partition_tree(c.oid) p), 0)
            ELSE pg_table_size(c.oid) END,
       k.cols, k.primary_key, k.index_name, k.first_type
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL (
  SELECT array_agg(a.attname::text ORDER BY u.ord) AS cols, i.indisprimary AS primary_key,
         ic.relname::text AS index_name,
         (array_agg(format_type(a.atttypid, NULL) ORDER BY u.ord))[1] AS first_type
  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
  CROSS JOIN LATERAL unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY AS u(attnum, ord)
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = u.attnum
  WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
  GROUP BY i.indexrelid, i.indisprimary, ic.relname, i.indnkeyatts
  HAVING bool_and(a.attnotnull)
  ORDER BY i.indisprimary DESC, i.indnkeyatts, ic.relname
  LIMIT 1
) k ON true
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'zdtp') AND n.nspname NOT LIKE 'pg_toast%'
"""

# What zdtp cannot reproduce, known from the source alone (the worker checks the rest, against
# the target, before it writes anything): one row per problem.
_UNREPRODUCIBLE_SQL = """
SELECT n.nspname, c.relname, 'partition ' || quote_ident(fn.nspname) || '.' || quote_ident(f.relname)
       || ' is a foreign table; zdtp copies only data stored in the source database'
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN LATERAL pg_partition_tree(c.oid) p ON true
JOIN pg_class f ON f.oid = p.relid AND f.relkind = 'f' JOIN pg_namespace fn ON fn.oid = f.relnamespace
WHERE c.relkind = 'p' AND NOT c.relispartition
UNION ALL
SELECT n.nspname, c.relname, 'column ' || quote_ident(a.attname) || ' has type ' || format_type(t.oid, NULL)
       || CASE WHEN t.typtype = 'c'
               THEN ', the row type of a table; zdtp cannot recreate it (use a composite type)'
               ELSE ', a base type defined outside any extension; create the type and the table on '
                    || 'the target yourself, zdtp then copies into it' END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type at ON at.oid = a.atttypid
JOIN pg_type t ON t.oid = CASE WHEN at.typelem <> 0 AND at.typlen = -1 THEN at.typelem
                               WHEN at.typtype = 'd' THEN at.typbasetype ELSE at.oid END
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND t.oid >= 16384
  AND ((t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) <> 'c')
       OR (t.typtype = 'b' AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                                           AND d.objid = t.oid AND d.deptype = 'e')))
"""


def _missing_hint(missing: str, catalog: list[str]) -> str:
    """Point at a table whose name differs only in case (a quoting slip, not a missing table)."""
    schema, name = parse_qualified(missing)
    near = [t for t in catalog if [p.lower() for p in parse_qualified(t)] == [schema.lower(), name.lower()]]
    return f" (did you mean {near[0]}? quote names that are not all lower case)" if near else ""


def _on_target(target_dsn: str | None, tables: list[str]) -> set[str]:
    """Which of ``tables`` already exist on the target (zdtp copies into them, creates nothing)."""
    if not target_dsn or not tables:
        return set()
    with psycopg.connect(target_dsn, connect_timeout=10, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND (n.nspname, c.relname) IN"
            " (SELECT * FROM unnest(%s::text[], %s::text[]))",
            ([parse_qualified(t)[0] for t in tables], [parse_qualified(t)[1] for t in tables]),
        ).fetchall()
    return {render_qualified(s, n) for s, n in rows}


def read_catalog(dsn: str, config: SyncTaskConfig, *, target_dsn: str | None = None) -> list[TableEstimate]:
    """Estimates for the tables ``config`` selects.

    PlanningError for a missing explicit table, and for selected tables zdtp cannot reproduce
    (all of them in one message, each with its reason): nothing has run yet. With ``target_dsn``,
    a table that already exists on the target is not refused for that: zdtp copies into it instead
    of creating it, and its columns must take the source's rows without loss (the worker's check,
    run here: PlanningError naming every such column with both types).
    """
    with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
        rows = conn.execute(_CATALOG_SQL).fetchall()
        by_name = {render_qualified(r[0], r[1]): r for r in rows}
        missing = [t for t in config.tables if t not in by_name]
        if missing:
            kinds = not_tables(conn, missing)
            if kinds:
                raise PlanningError(
                    f"sync task {config.name!r}: "
                    + "; ".join(f"{name} {why}" for name, why in sorted(kinds.items()))
                )
            hints = "".join(_missing_hint(t, list(by_name)) for t in missing)
            raise PlanningError(
                f"source has no table {', '.join(missing)} (sync task {config.name!r}){hints}"
            )
        selected = config.select_tables(list(by_name))
        problems = [
            (render_qualified(s, n), why)
            for s, n, why in conn.execute(_UNREPRODUCIBLE_SQL).fetchall()
            if render_qualified(s, n) in selected
        ]
        existing = _on_target(target_dsn, sorted({t for t, _ in problems}))
        problems = [(t, why) for t, why in problems if t not in existing]
        if problems:
            raise PlanningError(
                f"sync task {config.name!r}: zdtp cannot reproduce "
                f"{'; '.join(sorted(f'{t}: {why}' for t, why in problems))}. "
                "Exclude the table(s), or create them on the target yourself (zdtp then copies into them)."
            )
        estimates = [_estimate(conn, by_name[name]) for name in selected]
    if target_dsn:
        check_copyable(dsn, config, selected, target_dsn=target_dsn)
        # Tables already on the target: the worker's own pre-write check, run before any worker.
        lossy = target_problems(source_dsn=dsn, target_dsn=target_dsn, tables=selected)
        if lossy:
            raise PlanningError(f"sync task {config.name!r}: {'; '.join(lossy)}")
    return estimates


_OID_SQL = (
    "SELECT c.oid, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relname = %s"
)


def check_copyable(
    dsn: str, config: SyncTaskConfig, tables: list[str], *, target_dsn: str | None = None
) -> None:
    """PlanningError naming every table the full worker's pre-flight would refuse, all at once:
    row-level security that applies to the role, columns or owned sequences it may not read,
    large-object references, and (with ``target_dsn``) xml on a target without libxml and
    aclitem values naming roles the target lacks
    (:mod:`zdtp_worker.control.source_check`, the rules the worker applies). Run by
    :func:`read_catalog` when it is given the target, i.e. when a run plans."""
    problems: list[str] = []
    xml: list[tuple[str, list[str]]] = []
    acl: list[tuple[str, str, list[str]]] = []  # aclitem columns and the roles their values name
    with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
        for table in tables:
            schema, name = parse_qualified(table)
            row = conn.execute(_OID_SQL, (schema, name)).fetchone()
            if row is None:
                continue
            oid, relkind = int(row[0]), row[1]
            quoted = psycopg.sql.Identifier(schema, name).as_string(conn)
            from_sql = quoted if relkind == "p" else f"ONLY {quoted}"
            problems += source_check.source_problems(conn, oid, table, from_sql)
            columns = source_check.xml_columns(conn, oid)
            if columns:
                xml.append((table, columns))
            for column, is_array in conn.execute(source_check.acl_columns_sql("%s"), (oid,)).fetchall():
                sql = source_check.acl_roles_sql(from_sql, column, is_array)
                acl.append((table, column, [r[0] for r in conn.execute(sql).fetchall()]))
    if (xml or acl) and target_dsn:
        with psycopg.connect(target_dsn, connect_timeout=10, autocommit=True) as conn:
            if xml and not source_check.target_holds_xml(conn):
                problems += [source_check.xml_message(t, cols) for t, cols in xml]
            for table, column, roles in acl:
                have = conn.execute(
                    "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (roles,)
                ).fetchall()
                missing = [r for r in roles if r not in {h[0] for h in have}]
                if missing:
                    problems.append(source_check.acl_message(table, column, missing))
    if problems:
        raise PlanningError(f"sync task {config.name!r}: {'; '.join(problems)}")


def check_streamable(dsn: str, config: SyncTaskConfig, tables: list[str]) -> None:
    """PlanningError naming every table a CDC mode cannot stream, with the fix (``zdtp plan`` /
    ``validate``; the DAG's ``prepare_stream`` refuses the same way before creating anything)."""
    if config.mode == "full" or not tables:
        return
    with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
        refused = replica_identity.refusal_for(
            conn,
            [parse_qualified(t) for t in tables],
            set_replica_identity=config.set_replica_identity,
            handoff=config.mode == "full+incremental",
        )
        # Columns the stream cannot carry exactly (xml, large-object references).
        found = []
        for table in tables:
            schema, name = parse_qualified(table)
            row = conn.execute(_OID_SQL, (schema, name)).fetchone()
            if row is not None:
                quoted = psycopg.sql.Identifier(schema, name).as_string(conn)
                found.append((table, int(row[0]), quoted if row[1] == "p" else f"ONLY {quoted}"))
        typed = source_check.stream_problems(conn, found)
    parts = ([refused] if refused else []) + typed
    if parts:
        raise PlanningError(f"sync task {config.name!r} (mode {config.mode}): {'; '.join(parts)}")


def _estimate(conn: psycopg.Connection, row: tuple) -> TableEstimate:
    schema, table, reltuples, size, key, primary, index_name, first_type = row
    qualified = psycopg.sql.Identifier(schema, table)
    rows_est = int(reltuples)
    if rows_est == 0:
        # Never analysed (reltuples -1 → 0) or small: an exact count is cheap enough.
        rows_est = conn.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(qualified)).fetchone()[0]
    key = tuple(key or ())
    lo = hi = None
    if len(key) == 1 and first_type in INTEGER_TYPES:
        lo, hi = conn.execute(
            psycopg.sql.SQL("SELECT min({k}), max({k}) FROM {t}").format(
                k=psycopg.sql.Identifier(key[0]), t=qualified
            )
        ).fetchone()
    return TableEstimate(
        render_qualified(schema, table),
        rows_est,
        int(size or 0),
        key,
        lo,
        hi,
        key_index=None if primary or not key else index_name,
    )


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
    """Largest-first onto the least-loaded worker; drops workers that got nothing.

    Key ranges of one table go to different workers when one is free of that table (they were
    split to run in parallel); a worker that gets two ranges of a table copies both."""
    bins: list[list[Unit]] = [[] for _ in range(max(1, min(workers, len(units))))]
    loads = [0] * len(bins)
    for unit in sorted(units, key=lambda u: (-u.rows, u.table)):
        free = [i for i, b in enumerate(bins) if all(u.table != unit.table for u in b)]
        i = min(free or range(len(bins)), key=lambda j: (loads[j], j))
        bins[i].append(unit)
        loads[i] += max(unit.rows, 1)
    return [b for b in bins if b]


def _table_spec(unit: Unit, est: TableEstimate) -> TableSpec:
    # The chunk key is the planner's decision (primary key, else a NOT NULL unique index), and so
    # is copying a table with neither as one chunk: the worker does not refuse it later.
    return TableSpec(
        source=unit.table, key_range=unit.key_range, key=est.pk or None, allow_single_chunk=not est.pk
    )


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
    by_name = {e.name: e for e in estimates}
    cpu = worker_cpu(dict(config.resources.requests), dict(config.resources.limits))
    # The config may set streams itself (it wins); otherwise chosen per worker (see auto_streams).
    explicit = config.streams
    specs = []
    for i, bucket in enumerate(pack(units, workers=n)):
        tables = [_table_spec(u, by_name[u.table]) for u in bucket]
        # Streams share the chunks of one table at a time: the biggest chunked piece decides.
        biggest = max((u.rows for u in bucket if by_name[u.table].pk), default=0)
        options = FullOptions(
            copy_mode=config.copy_mode,
            chunk_rows=config.chunk_rows,
            verify=config.verify,
            lease_seconds=config.lease_seconds,
            streams=choose_streams(rows=biggest, chunk_rows=config.chunk_rows, cpu=cpu, explicit=explicit),
        )
        specs.append(
            WorkerSpec(
                mode="full", task=config.name, run_id=run_id, worker=f"w{i}", tables=tables, full=options
            )
        )
    return specs
