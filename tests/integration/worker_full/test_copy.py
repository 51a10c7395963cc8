"""Full sync on real PostgreSQL: every PK kind and awkward column types arrive intact; reruns,
key ranges, modes, snapshots and schema checks behave as documented."""

from __future__ import annotations

import pytest

from tests.integration.worker_full.helpers import execute, fingerprint, make_spec, scalar
from zdtp_worker.contract.errors import ConfigError, DataError, ExitCode
from zdtp_worker.full import ensure_target_table, run_full

pytestmark = pytest.mark.postgres

# Columns every test table carries: NULLs, numeric, timestamptz, jsonb, bytea, arrays, unicode.
PAYLOAD_COLS = "n numeric(20,6), ts timestamptz, doc jsonb, blob bytea, tags text[], nums int[], note text"
PAYLOAD_EXPR = (
    "CASE WHEN g % 7 = 0 THEN NULL ELSE g * 1.000001 END, "
    "timestamptz '2024-02-29 12:00:00+05' + g * interval '1 minute', "
    "CASE WHEN g % 5 = 0 THEN NULL "
    "ELSE jsonb_build_object('g', g, 'ü', 'ñ', 'arr', jsonb_build_array(g, 'x')) END, "
    "CASE WHEN g % 3 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END, "
    "ARRAY['a' || g, NULL, 'Grüße €'], ARRAY[g, -g], "
    "CASE WHEN g % 11 = 0 THEN NULL ELSE 'Zoë 日本語 🚀 ' || g || E' tab\\t quote'' bs\\\\' END"
)

TABLES = {
    "t_int": ("id integer PRIMARY KEY", "g"),
    "t_bigint": ("id bigint PRIMARY KEY", "g * 1000000007::bigint - 5000000000"),
    "t_uuid": ("id uuid PRIMARY KEY", "md5(g::text)::uuid"),
    "t_text": ("id text PRIMARY KEY", "'k-' || g || ' ä'"),
    "t_comp": ("a integer, b text, PRIMARY KEY (a, b)", "g % 13, 'b' || g"),
}


def _create_tables(dsn: str, rows: int = 3000) -> None:
    for name, (key_def, key_expr) in TABLES.items():
        execute(dsn, f"CREATE TABLE {name} ({key_def}, {PAYLOAD_COLS})")
        execute(
            dsn, f"INSERT INTO {name} SELECT {key_expr}, {PAYLOAD_EXPR} FROM generate_series(1, {rows}) g"
        )


def test_every_pk_kind_and_type_round_trips(source_dsn: str, target_dsn: str) -> None:
    _create_tables(source_dsn)
    spec = make_spec(list(TABLES), chunk_rows=700, verify="checksum")
    result = run_full(spec, source_dsn=source_dsn, target_dsn=target_dsn)
    assert result.rows == 3000 * len(TABLES)
    for name in TABLES:
        assert fingerprint(source_dsn, name) == fingerprint(target_dsn, name), name
        table = next(t for t in result.tables if t.table == f"public.{name}")
        assert table.chunks >= 4 and table.checksum
    # PK and NOT NULL came along.
    assert scalar(
        target_dsn,
        "SELECT count(*) FROM pg_constraint WHERE contype = 'p' AND connamespace = 'public'::regnamespace",
    ) == len(TABLES)
    # Rerun with the same run id: every chunk skipped, nothing copied, target unchanged.
    again = run_full(spec, source_dsn=source_dsn, target_dsn=target_dsn)
    assert again.rows == 0 and again.chunks == 0
    assert all(t.chunks_skipped >= 4 for t in again.tables)
    for name in TABLES:
        assert fingerprint(source_dsn, name) == fingerprint(target_dsn, name), name


def test_new_run_replaces_stale_target_rows(source_dsn: str, target_dsn: str) -> None:
    execute(source_dsn, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    execute(source_dsn, "INSERT INTO t SELECT g, 'v' || g FROM generate_series(100, 5000) g")
    execute(target_dsn, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    # Stale rows below, inside and above the source's key extent.
    execute(target_dsn, "INSERT INTO t VALUES (1, 'old'), (200, 'old'), (99999, 'old')")
    run_full(make_spec(["t"], chunk_rows=1000), source_dsn=source_dsn, target_dsn=target_dsn)
    assert fingerprint(source_dsn, "t") == fingerprint(target_dsn, "t")


def test_key_range_and_bytes_chunking(source_dsn: str, target_dsn: str) -> None:
    execute(source_dsn, "CREATE TABLE t (id bigint PRIMARY KEY, v text)")
    execute(source_dsn, "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 10000) g")
    execute(source_dsn, "ANALYZE t")
    spec = make_spec([{"source": "t", "key_range": {"lower": [2001], "upper": [4001]}}], chunk_bytes=40_000)
    result = run_full(spec, source_dsn=source_dsn, target_dsn=target_dsn)
    assert result.rows == 2000
    assert result.chunks > 3  # ~130-byte rows, 40 kB chunks
    assert scalar(target_dsn, "SELECT min(id) || '-' || max(id) FROM t") == "2001-4000"


def test_empty_table_and_text_fallback(source_dsn: str, target_dsn: str) -> None:
    execute(source_dsn, "CREATE TABLE e (id int PRIMARY KEY)")
    execute(source_dsn, "CREATE TABLE f (id int PRIMARY KEY, v varchar(20), n integer)")
    execute(source_dsn, "INSERT INTO f SELECT g, 'v' || g, g FROM generate_series(1, 500) g")
    # Existing target with wider but compatible types: text COPY, same data.
    execute(target_dsn, "CREATE TABLE f (id bigint PRIMARY KEY, v text, n numeric, extra text)")
    result = run_full(make_spec(["e", "f"], verify="count"), source_dsn=source_dsn, target_dsn=target_dsn)
    assert result.rows == 500
    assert scalar(target_dsn, "SELECT count(*) FROM e") == 0
    assert scalar(target_dsn, "SELECT sum(n) FROM f") == sum(range(1, 501))


def test_incompatible_target_names_the_column_and_changes_nothing(source_dsn: str, target_dsn: str) -> None:
    execute(source_dsn, "CREATE TABLE t (id int PRIMARY KEY, created timestamptz)")
    execute(source_dsn, "INSERT INTO t VALUES (1, now())")
    execute(target_dsn, "CREATE TABLE t (id int PRIMARY KEY, created integer)")
    execute(target_dsn, "INSERT INTO t VALUES (7, 7)")
    with pytest.raises(DataError, match="'created'") as err:
        run_full(make_spec(["t"]), source_dsn=source_dsn, target_dsn=target_dsn)
    assert err.value.exit_code == ExitCode.DATA_ERROR
    assert scalar(target_dsn, "SELECT count(*) FROM t") == 1
    assert scalar(target_dsn, "SELECT count(*) FROM pg_namespace WHERE nspname = 'zdtp'") == 0


def test_no_primary_key(source_dsn: str, target_dsn: str) -> None:
    execute(source_dsn, "CREATE TABLE nopk (a int, b text)")
    execute(source_dsn, "INSERT INTO nopk SELECT g, 'x' FROM generate_series(1, 100) g")
    with pytest.raises(DataError, match="no primary key"):
        run_full(make_spec(["nopk"]), source_dsn=source_dsn, target_dsn=target_dsn)
    assert scalar(target_dsn, "SELECT to_regclass('public.nopk')") is None
    spec = make_spec([{"source": "nopk", "allow_single_chunk": True}])
    assert run_full(spec, source_dsn=source_dsn, target_dsn=target_dsn).rows == 100
    assert run_full(spec, source_dsn=source_dsn, target_dsn=target_dsn).rows == 0  # done: skipped
    assert scalar(target_dsn, "SELECT count(*) FROM nopk") == 100


def test_restart_mode_copies_again(source_dsn: str, target_dsn: str) -> None:
    execute(source_dsn, "CREATE TABLE t (id int PRIMARY KEY, v int)")
    execute(source_dsn, "INSERT INTO t SELECT g, g FROM generate_series(1, 1000) g")
    run_full(make_spec(["t"], chunk_rows=300), source_dsn=source_dsn, target_dsn=target_dsn)
    execute(source_dsn, "UPDATE t SET v = -v WHERE id % 2 = 0")
    assert run_full(make_spec(["t"]), source_dsn=source_dsn, target_dsn=target_dsn).rows == 0
    again = run_full(make_spec(["t"], copy_mode="restart"), source_dsn=source_dsn, target_dsn=target_dsn)
    assert again.rows == 1000
    assert fingerprint(source_dsn, "t") == fingerprint(target_dsn, "t")


def test_exported_snapshot_is_honoured(source_dsn: str, target_dsn: str) -> None:
    import psycopg

    execute(source_dsn, "CREATE TABLE t (id int PRIMARY KEY, v int)")
    execute(source_dsn, "INSERT INTO t SELECT g, g FROM generate_series(1, 1000) g")
    with psycopg.connect(source_dsn) as holder:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        snap = holder.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
        execute(source_dsn, "INSERT INTO t SELECT g, g FROM generate_series(1001, 1500) g")
        execute(source_dsn, "DELETE FROM t WHERE id <= 10")
        result = run_full(make_spec(["t"], snapshot=snap), source_dsn=source_dsn, target_dsn=target_dsn)
    assert result.rows == 1000
    assert scalar(target_dsn, "SELECT min(id) || '-' || max(id) FROM t") == "1-1000"
    with pytest.raises(ConfigError, match="snapshot"):
        run_full(
            make_spec(["t"], run_id="r2", snapshot="00000003-0000001B-1"),
            source_dsn=source_dsn,
            target_dsn=target_dsn,
        )


def test_ensure_target_table_helper(source_dsn: str, target_dsn: str) -> None:
    execute(source_dsn, "CREATE SCHEMA s; CREATE TABLE s.t (id int PRIMARY KEY, v text NOT NULL)")
    plan = ensure_target_table(source_dsn=source_dsn, target_dsn=target_dsn, source="s.t", target="x.t2")
    assert plan.copy_format == "binary"
    assert (
        scalar(
            target_dsn,
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'x.t2'::regclass AND attname = 'v'",
        )
        is True
    )
    # Idempotent, and checks compatibility of an existing table.
    ensure_target_table(source_dsn=source_dsn, target_dsn=target_dsn, source="s.t", target="x.t2")


def test_parallel_streams(source_dsn: str, target_dsn: str) -> None:
    execute(source_dsn, "CREATE TABLE t (id uuid PRIMARY KEY, v text)")
    execute(source_dsn, "INSERT INTO t SELECT md5(g::text)::uuid, 'v' || g FROM generate_series(1, 20000) g")
    spec = make_spec(["t"], chunk_rows=1000, streams=3, verify="checksum")
    result = run_full(spec, source_dsn=source_dsn, target_dsn=target_dsn)
    assert result.chunks == 20 and result.rows == 20000
    assert fingerprint(source_dsn, "t") == fingerprint(target_dsn, "t")
    workers = scalar(target_dsn, "SELECT count(DISTINCT worker) FROM zdtp.full_chunks")
    assert workers == 1  # one worker process, several streams
