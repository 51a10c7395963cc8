"""Binary mode (pgoutput ``binary``, binary COPY on the target) keeps the target exact.

- Every built-in type of the zoo's scalar tables (edge values: NaN, infinities, BC dates, extreme
  intervals, char padding, bit strings…) plus built-in arrays, multi-dimensional arrays with lower
  bounds, json/jsonb, ranges, multiranges, bytea, uuid and TOASTed text stream in binary mode
  from PostgreSQL 18 and 15 sources into a PostgreSQL 18 target, through inserts, updates,
  unchanged TOAST values, deletes, and key moves; the target ends equal row by row in text form.
- A binary stream that meets a user type mid-stream (``ALTER TABLE … ADD COLUMN`` of an enum,
  inside an open batch) rolls back, restarts in text mode, and still ends exact, with every
  change applied once (``zdtp.cdc_state`` counts).
"""

from __future__ import annotations

import logging

import psycopg
import pytest

from tests.fixtures import schema_zoo
from tests.fixtures.postgres import PgServer
from tests.fixtures.postgres15 import pg15_server  # noqa: F401 - fixture
from tests.integration.worker_cdc.helpers import InProcessWorker, make_spec, state, table_rows, wait_until

pytestmark = pytest.mark.postgres

SCALARS = next(t for t in schema_zoo.TABLES if t.name == "scalars_edge")

# The zoo's `structured` table without its user types (enum, domain, composite): built-ins only.
BUILTINS_DDL = """
CREATE TABLE zoo.builtins (
    id int PRIMARY KEY, ints int[], texts text[], matrix int[][], js json, jsb jsonb,
    r_int int4range, r_ts tstzrange, r_num numrange, mr int4multirange, blob bytea, note text,
    u uuid, pt point, money_less numeric[], tsv tsvector, big_note text
)"""
BUILTINS_DATA = r"""
INSERT INTO zoo.builtins VALUES
(1, '{}', '{"a,b","c\"d",NULL,"NULL",""}', '{{1,2},{3,4}}',
 '{"b": 1, "a": [1, 2, {"c": null}], "b": 2}', '{"z": 1, "a": "\u00e9", "n": null}',
 'empty', '[2020-01-01 00:00:00+00,infinity)', '(,5.5]', '{[1,3),[5,9)}', '\x00ff', E'tab\there\nnewline',
 '00000000-0000-0000-0000-000000000000', '(1.5,-2)', '{1.50,NaN,-Infinity}', 'a fat cat', NULL),
(2, '{NULL,1}', '{}', '[0:1]={7,8}', 'null', 'null', '[1,10)', '(-infinity,2025-06-01 12:00:00+00]',
 '[0,0]', '{}', '', '\N', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '(0,0)', '{}', '', ''),
(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
(4, '{-2147483648,2147483647}', '{" leading", "trailing "}', '{{NULL}}', '[]',
 '[{}, [], "", 0, -0.0, 1e400]', '(,)', 'empty', '[-1e-30,1e30)', '{(,)}', '\x5c4e', E'back\\slash',
 md5('4')::uuid, '(1e300,-1e-300)', '{0.000001}', 'ß:1 日本:2', NULL);
INSERT INTO zoo.builtins
SELECT 100 + i, ARRAY[i, i + 1], ARRAY['t' || i], NULL, json_build_object('i', i),
       jsonb_build_object('i', i, 'l', ARRAY[i]), int4range(i, i + 10), NULL, numrange(i, i + 0.5),
       int4multirange(int4range(i, i + 1)), int4send(i), 'row ' || i, md5(i::text)::uuid,
       point(i, -i), ARRAY[i / 7.0], to_tsvector('simple', 'word' || i),
       -- incompressible and > 2 kB: stored out of line, so later updates send it as unchanged
       (SELECT string_agg(md5(i::text || g::text), '') FROM generate_series(1, 100) g)
FROM generate_series(1, 300) i"""
CHANGES = """
UPDATE zoo.scalars_edge SET f8 = f8 * 2, tstz = tstz + interval '1 day' WHERE id > 100 AND id % 3 = 0;
-- big_note unchanged (TOAST 'u')
UPDATE zoo.builtins SET note = 'updated ' || id WHERE id > 100 AND id % 4 = 0;
DELETE FROM zoo.builtins WHERE id > 100 AND id % 5 = 0;
DELETE FROM zoo.scalars_edge WHERE id = 2;
-- key moves
UPDATE zoo.scalars_edge SET id = id + 1000 WHERE id BETWEEN 101 AND 110;
UPDATE zoo.builtins SET jsb = jsb || '{"x": true}', mr = mr + '{[100,200)}' WHERE id BETWEEN 1 AND 4
"""
TABLES = ["zoo.scalars_edge", "zoo.builtins"]


@pytest.fixture(params=["pg18", "pg15"])
def source_server(request: pytest.FixtureRequest) -> PgServer:
    return request.getfixturevalue("pg_server" if request.param == "pg18" else "pg15_server")


@pytest.fixture
def zoo_src(source_server: PgServer, target_dsn: str):
    name = source_server.create_database("bin")
    dsn = source_server.dsn(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA zoo")
        conn.execute(SCALARS.ddl)
        conn.execute(BUILTINS_DDL)
    yield dsn
    source_server.drop_database(name)


def _rows_as_text(dsn: str, table: str) -> list[tuple] | None:
    # A row's text form compares every column exactly (NaN = NaN, -0 vs 0, char padding, …).
    return table_rows(dsn, f"{table} x", "x::text", "x.id")


def _wait_same(source: str, target: str, worker: InProcessWorker, tables: list[str]) -> None:
    def same() -> bool:
        worker.check()
        return all(_rows_as_text(source, t) == _rows_as_text(target, t) for t in tables)

    wait_until(same, timeout=120, what="target to equal source in text form")


def _modes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        "binary" if r.getMessage().endswith("binary values") else "text"
        for r in caplog.records
        if r.getMessage().startswith("streaming slot ")
    ]


def test_binary_stream_over_builtin_types_equals_source(
    zoo_src: str, target_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="zdtp_worker.incremental")
    worker = InProcessWorker(make_spec(TABLES), zoo_src, target_dsn).start().wait_streaming()
    try:
        with psycopg.connect(zoo_src, autocommit=True) as src:
            for script in (SCALARS.data, BUILTINS_DATA, CHANGES):
                _run(src, script)
        _wait_same(zoo_src, target_dsn, worker, TABLES)
        assert _modes(caplog) == ["binary"], "the stream did not run (only) in binary mode"
        assert not [r for r in caplog.records if "restarting in text mode" in r.getMessage()]
        toasted = table_rows(target_dsn, "zoo.builtins", "count(*)", "1")
        assert toasted == [(4 + 300 - 60,)]
    finally:
        worker.stop()


def test_user_type_mid_stream_restarts_in_text_mode_and_stays_exact(
    zoo_src: str, target_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="zdtp_worker.incremental")
    # The enum exists on both sides (as a schema migration would make it); the target column for
    # it is added by the stream.
    for dsn in (zoo_src, target_dsn):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA IF NOT EXISTS zoo")
            conn.execute("CREATE TYPE zoo.mood AS ENUM ('sad', 'ok', 'happy')")
    worker = InProcessWorker(make_spec(TABLES, batch_max_seconds=5), zoo_src, target_dsn).start()
    worker.wait_streaming()
    written = 0
    try:
        with psycopg.connect(zoo_src, autocommit=True) as src:
            written += _run(src, BUILTINS_DATA)
            # One source transaction: binary changes, then the enum column, then rows using it,
            # all in the same (open, uncommitted) target batch when the Relation message comes.
            with src.transaction():
                written += _run(src, "UPDATE zoo.builtins SET note = 'before' WHERE id <= 150")
                src.execute("ALTER TABLE zoo.builtins ADD COLUMN mood zoo.mood")
                written += _run(
                    src, "UPDATE zoo.builtins SET mood = (enum_range(NULL::zoo.mood))[1 + id % 3]"
                )
                written += _run(
                    src, "INSERT INTO zoo.builtins (id, note, mood) VALUES (9999, 'new', 'happy')"
                )
            written += _run(src, SCALARS.data)
            written += _run(src, CHANGES)
        _wait_same(zoo_src, target_dsn, worker, TABLES)
        assert _modes(caplog) == ["binary", "text"], _modes(caplog)
        assert [r for r in caplog.records if "restarting in text mode" in r.getMessage()]
    finally:
        worker.stop()
    # Exactly once: the stream's state counts every source change once (the rolled-back binary
    # batch is not counted, its replay in text mode is).
    ((_, _, _, _, changes),) = state(target_dsn)
    assert changes == written


def _run(conn: psycopg.Connection, script: str) -> int:
    """Run ``;``-separated statements; the number of rows they changed (= change messages)."""
    total = 0
    for statement in script.split(";\n"):
        if statement.strip():
            total += max(conn.execute(statement).rowcount, 0)
    return total


def test_a_row_completed_from_the_source_falls_back_to_text_without_losing_the_batch(
    source_dsn: str, target_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Rows the target lacks (written before the slot, as a hand-off can leave them), then updates
    # that leave their TOASTed column unchanged: the binary applier cannot read the source as text,
    # so the stream restarts in text mode; the batch's other rows must not be committed without them.
    ddl = "CREATE TABLE t (id int PRIMARY KEY, v int, big text)"
    for dsn in (source_dsn, target_dsn):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(ddl)
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute(
            "INSERT INTO t SELECT i, i, (SELECT string_agg(md5(i::text || g::text), '')"
            " FROM generate_series(1, 100) g) FROM generate_series(1, 10) i"
        )
    caplog.set_level(logging.INFO, logger="zdtp_worker.incremental")
    worker = InProcessWorker(make_spec(["t"], batch_max_seconds=5), source_dsn, target_dsn).start()
    worker.wait_streaming()
    try:
        with psycopg.connect(source_dsn, autocommit=True) as src, src.transaction():
            src.execute("INSERT INTO t VALUES (100, 100, 'small')")
            src.execute("UPDATE t SET v = -v WHERE id <= 5")  # big unchanged, rows missing on the target
        with psycopg.connect(source_dsn, autocommit=True) as src:
            src.execute("INSERT INTO t VALUES (101, 101, 'after')")

        def caught_up() -> bool:
            worker.check()
            expected = [
                r
                for r in _rows_as_text(source_dsn, "t") or []
                if not r[0].startswith(("(6,", "(7,", "(8,", "(9,", "(10,"))
            ]
            return _rows_as_text(target_dsn, "t") == expected

        wait_until(caught_up, timeout=60, what="rows completed from the source")
        assert _modes(caplog) == ["binary", "text"], _modes(caplog)
    finally:
        worker.stop()
