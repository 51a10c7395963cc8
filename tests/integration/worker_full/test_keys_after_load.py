"""A target table zdtp creates gets its keys after the bulk load, built once by the worker that
finishes the last key range, and its sequences end at the source's values."""

from __future__ import annotations

import pytest

from tests.integration.worker_full.helpers import execute, scalar
from zdtp_provider.config import SyncTaskConfig
from zdtp_provider.planner import plan_workers, read_catalog
from zdtp_worker.full import run_full

pytestmark = pytest.mark.postgres

INDEXES = "SELECT count(*) FROM pg_index WHERE indrelid = 'app.items'::regclass"


def test_keys_are_built_when_the_last_part_is_in(source_dsn: str, target_dsn: str) -> None:
    execute(
        source_dsn,
        """
        CREATE SCHEMA app;
        CREATE TABLE app.items (id bigserial PRIMARY KEY, sku text NOT NULL, qty int CHECK (qty >= 0));
        CREATE UNIQUE INDEX items_sku ON app.items (sku);
        INSERT INTO app.items (sku, qty) SELECT 'sku-' || g, g % 50 FROM generate_series(1, 3000) g;
        ANALYZE;
        """,
    )
    cfg = SyncTaskConfig(
        name="keys", source_conn_id="s", target_conn_id="t", tables=["app.items"], workers=2, chunk_rows=500
    )
    first, second = plan_workers(cfg, read_catalog(source_dsn, cfg), run_id="keys-run")
    assert first.tables[0].key_range and second.tables[0].key_range  # one table, two ranges

    run_full(first, source_dsn=source_dsn, target_dsn=target_dsn)
    # One range in: rows copied into a keyless table (no index to maintain, no deletes needed).
    assert scalar(target_dsn, INDEXES) == 0
    assert scalar(target_dsn, "SELECT finalized FROM zdtp.full_tables WHERE target = 'app.items'") is False
    # Its CHECK constraint and the serial default came with the table at creation.
    assert (
        scalar(
            target_dsn,
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'app.items'::regclass AND contype = 'c'",
        )
        == 1
    )

    run_full(second, source_dsn=source_dsn, target_dsn=target_dsn)
    assert scalar(target_dsn, INDEXES) == 2  # primary key + the unique index
    assert scalar(target_dsn, "SELECT finalized FROM zdtp.full_tables WHERE target = 'app.items'") is True
    assert scalar(target_dsn, "SELECT count(*) - count(DISTINCT id) FROM app.items") == 0
    assert scalar(target_dsn, "SELECT count(*) FROM app.items") == 3000
    assert scalar(target_dsn, "SELECT last_value FROM app.items_id_seq") == 3000
    # A cut-over does not reuse ids.
    assert scalar(target_dsn, "SELECT nextval('app.items_id_seq')") == 3001

    # Re-running a finished part changes nothing and builds nothing twice.
    run_full(first, source_dsn=source_dsn, target_dsn=target_dsn)
    assert scalar(target_dsn, INDEXES) == 2


def test_existing_target_keeps_its_sequence_when_ahead(source_dsn: str, target_dsn: str) -> None:
    for dsn in (source_dsn, target_dsn):
        execute(dsn, "CREATE TABLE t (id serial PRIMARY KEY, v text)")
    execute(source_dsn, "INSERT INTO t (v) SELECT 'x' FROM generate_series(1, 10)")
    execute(target_dsn, "SELECT setval('t_id_seq', 500)")
    cfg = SyncTaskConfig(name="seq", source_conn_id="s", target_conn_id="t", tables=["t"], workers=1)
    (spec,) = plan_workers(cfg, read_catalog(source_dsn, cfg), run_id="seq-run")
    run_full(spec, source_dsn=source_dsn, target_dsn=target_dsn)
    assert scalar(target_dsn, "SELECT count(*) FROM t") == 10
    assert scalar(target_dsn, "SELECT last_value FROM t_id_seq") == 500  # never moved back


def test_a_restart_of_the_run_still_builds_the_keys(source_dsn: str, target_dsn: str) -> None:
    execute(
        source_dsn,
        "CREATE TABLE t (id int PRIMARY KEY, v text);"
        " INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 2000) g; ANALYZE",
    )
    cfg = SyncTaskConfig(
        name="rk", source_conn_id="s", target_conn_id="t", tables=["t"], workers=2, chunk_rows=300
    )
    first, second = plan_workers(cfg, read_catalog(source_dsn, cfg), run_id="rk-run")
    run_full(first, source_dsn=source_dsn, target_dsn=target_dsn)  # resume: created keyless
    assert scalar(target_dsn, "SELECT count(*) FROM pg_index WHERE indrelid = 't'::regclass") == 0
    for spec in (first, second):  # the same run again, from scratch
        restart = spec.model_copy(update={"full": spec.full.model_copy(update={"copy_mode": "restart"})})
        run_full(restart, source_dsn=source_dsn, target_dsn=target_dsn)
    assert scalar(target_dsn, "SELECT count(*) FROM pg_index WHERE indrelid = 't'::regclass") == 1
    assert scalar(target_dsn, "SELECT count(*), count(DISTINCT id) FROM t") == 2000
    assert scalar(target_dsn, "SELECT count(DISTINCT id) FROM t") == 2000


def test_replica_identity_is_reproduced(source_dsn: str, target_dsn: str) -> None:
    execute(
        source_dsn,
        """
        CREATE TABLE full_ri (a int, b text); ALTER TABLE full_ri REPLICA IDENTITY FULL;
        CREATE TABLE idx_ri (code text NOT NULL, v int); CREATE UNIQUE INDEX idx_ri_code ON idx_ri (code);
        ALTER TABLE idx_ri REPLICA IDENTITY USING INDEX idx_ri_code;
        INSERT INTO full_ri VALUES (1, 'x'), (1, 'x'); INSERT INTO idx_ri VALUES ('a', 1), ('b', 2);
        """,
    )
    cfg = SyncTaskConfig(
        name="ri", source_conn_id="s", target_conn_id="t", tables=["full_ri", "idx_ri"], workers=1
    )
    (spec,) = plan_workers(cfg, read_catalog(source_dsn, cfg), run_id="ri-run")
    run_full(spec, source_dsn=source_dsn, target_dsn=target_dsn)
    query = (
        "SELECT relname, relreplident::text FROM pg_class WHERE relname IN ('full_ri', 'idx_ri') ORDER BY 1"
    )
    with __import__("psycopg").connect(target_dsn) as conn:
        assert conn.execute(query).fetchall() == [("full_ri", "f"), ("idx_ri", "i")]
        assert conn.execute(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indisreplident"
        ).fetchall() == [("idx_ri_code",)]


def test_one_worker_with_two_ranges_of_a_table(source_dsn: str, target_dsn: str) -> None:
    execute(
        source_dsn,
        "CREATE TABLE t (id int PRIMARY KEY, v text);"
        " INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g; ANALYZE",
    )
    cfg = SyncTaskConfig(
        name="two", source_conn_id="s", target_conn_id="t", tables=["t"], workers=2, chunk_rows=300
    )
    first, second = plan_workers(cfg, read_catalog(source_dsn, cfg), run_id="two-run")
    both = first.model_copy(update={"tables": [*first.tables, *second.tables]})
    result = run_full(both, source_dsn=source_dsn, target_dsn=target_dsn)
    assert sum(t.rows for t in result.tables) == 1000
    assert scalar(target_dsn, "SELECT count(DISTINCT id) FROM t") == 1000
    assert scalar(target_dsn, "SELECT count(*) FROM pg_index WHERE indrelid = 't'::regclass") == 1
