"""Refusals: what zdtp cannot do exactly is refused before anything is written, with the reason
and the fix; and nothing is left behind — no publication or slot on the source, its replica
identity untouched, no ``zdtp`` schema and no tables on the target.

(Quoted names are *not* refused: see ``test_zoo_full.test_plan_lists_quoted_names...`` and the
zoo runs.) None of these tests goes through an operator, so no Kubernetes object can exist; the
operator-level refusal is covered where the operators are tested.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.integration.schema_zoo import harness
from zdtp_provider import planner
from zdtp_provider.database_steps import prepare_stream
from zdtp_provider.planner import read_catalog
from zdtp_worker.contract.errors import WorkerError

EXIT_DATA = 65


def _rows(dsn: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def assert_source_untouched(source_dsn: str) -> None:
    assert _rows(source_dsn, "SELECT pubname FROM pg_publication") == []
    assert (
        _rows(source_dsn, "SELECT slot_name FROM pg_replication_slots WHERE database = current_database()")
        == []
    )
    identity = _rows(
        source_dsn, "SELECT relreplident::text FROM pg_class WHERE oid = 'zoo.nokey_plain'::regclass"
    )
    assert identity == [("d",)]


def assert_target_empty(target_dsn: str, *, allowed: tuple[str, ...] = ()) -> None:
    """No zdtp schema; no table except the ones the test created itself (``allowed``)."""
    schemas = _rows(target_dsn, "SELECT nspname FROM pg_namespace WHERE nspname = 'zdtp'")
    assert schemas == [], "the target got a zdtp schema"
    tables = _rows(
        target_dsn,
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
    )
    assert sorted(t for (t,) in tables if t not in allowed) == []


def _task_file(tmp_path: Path, *, mode: str, tables: list[str]) -> Path:
    listed = ", ".join(f"'{t}'" for t in tables)
    path = tmp_path / "task.yaml"
    path.write_text(
        f"name: zoo-refuse\nsource_conn_id: zoo_source\ntarget_conn_id: zoo_target\nmode: {mode}\n"
        f"tables: [{listed}]\n",
        encoding="utf-8",
    )
    return path


def _assert_keyless_refusal(text: str) -> None:
    assert "nokey_plain" in text, text
    assert "primary key" in text, text
    assert "REPLICA IDENTITY" in text or "ADD PRIMARY KEY" in text, f"no fix given: {text}"


@pytest.mark.parametrize("mode", ["incremental", "full+incremental"])
def test_cdc_task_on_keyless_table_is_refused_by_plan(
    zoo_source: str, target_dsn: str, tmp_path: Path, mode: str
) -> None:
    task = _task_file(tmp_path, mode=mode, tables=["zoo.text_key", "zoo.nokey_plain"])
    done = harness.run_cli("plan", str(task), "--source-dsn", zoo_source)
    assert done.returncode != 0, done.stdout
    _assert_keyless_refusal(done.stderr)
    assert "text_key" not in done.stderr  # the streamable table is not blamed
    assert_source_untouched(zoo_source)
    assert_target_empty(target_dsn)


def test_cdc_task_on_keyless_table_is_refused_by_validate(
    zoo_source: str, target_dsn: str, tmp_path: Path
) -> None:
    task = _task_file(tmp_path, mode="incremental", tables=["zoo.nokey_plain"])
    done = harness.run_cli("validate", str(task), env={"ZDTP_SOURCE_DSN": zoo_source})
    assert done.returncode != 0, done.stdout
    _assert_keyless_refusal(done.stderr)
    assert_source_untouched(zoo_source)
    assert_target_empty(target_dsn)


def test_prepare_stream_refuses_keyless_table_before_creating_anything(
    zoo_source: str, target_dsn: str
) -> None:
    # The DAG's first task of a full+incremental run: it must refuse before the slot exists.
    config = harness.zoo_config(
        "zoo-prepare", mode="full+incremental", include=[], tables=["zoo.nokey_plain"]
    )
    tables = [e.name for e in read_catalog(zoo_source, config)]
    with pytest.raises(WorkerError) as refused:
        prepare_stream(source_dsn=zoo_source, config=config, tables=tables)
    _assert_keyless_refusal(str(refused.value))
    assert_source_untouched(zoo_source)
    assert_target_empty(target_dsn)


def test_full_incremental_refuses_keyless_full_identity_table(zoo_source: str, target_dsn: str) -> None:
    # Streams in mode incremental (test_zoo_cdc), but the copy → stream hand-off replays the
    # changes committed while the copy ran: without a key a replayed INSERT duplicates its row.
    config = harness.zoo_config(
        "zoo-handoff", mode="full+incremental", include=[], tables=["zoo.ri_full_nokey"]
    )
    tables = [e.name for e in read_catalog(zoo_source, config)]
    with pytest.raises(WorkerError) as refused:
        prepare_stream(source_dsn=zoo_source, config=config, tables=tables, target_dsn=target_dsn)
    message = str(refused.value)
    assert "ri_full_nokey" in message and "replays" in message and "ADD PRIMARY KEY" in message, message
    assert _rows(zoo_source, "SELECT pubname FROM pg_publication") == []
    assert (
        _rows(zoo_source, "SELECT slot_name FROM pg_replication_slots WHERE database = current_database()")
        == []
    )
    assert_target_empty(target_dsn)
    # The same table in mode incremental passes the same checks.
    streaming = harness.zoo_config(
        "zoo-handoff", mode="incremental", include=[], tables=["zoo.ri_full_nokey"]
    )
    assert planner.check_streamable(zoo_source, streaming, tables) is None
    with pytest.raises(planner.PlanningError, match="ri_full_nokey"):
        planner.check_streamable(zoo_source, config, tables)


LOSSY = [
    ("numeric(12,4)", "numeric(12,2)", "1.2345"),
    ("timestamp with time zone", "date", "2025-03-01 12:34:56+00"),
    ("double precision", "real", "0.1"),
    ("bigint", "integer", "5000000000"),
    ("character varying(20)", "character varying(5)", "longer than five"),
]


@pytest.mark.parametrize(
    ("source_type", "target_type", "value"), LOSSY, ids=[f"{s}->{t}" for s, t, _ in LOSSY]
)
def test_full_copy_into_lossy_target_column_is_refused(
    empty_source: str, target_dsn: str, source_type: str, target_type: str, value: str
) -> None:
    for dsn, col_type in ((empty_source, source_type), (target_dsn, target_type)):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA zoo")
            conn.execute(f"CREATE TABLE zoo.lossy_target (id int PRIMARY KEY, amount_due {col_type})")
    with psycopg.connect(empty_source, autocommit=True) as conn:
        conn.execute(f"INSERT INTO zoo.lossy_target VALUES (1, %s::{source_type})", (value,))

    config = harness.zoo_config("zoo-lossy")
    specs = harness.plan(empty_source, config)
    finished = harness.run_full_workers(specs, source_dsn=empty_source, target_dsn=target_dsn)
    codes = [f.returncode for f in finished]
    assert codes == [EXIT_DATA] * len(finished), [f.describe() for f in finished]
    message = finished[0].stderr
    assert "amount_due" in message and source_type in message and target_type in message, message
    assert _rows(target_dsn, "SELECT count(*) FROM zoo.lossy_target") == [(0,)]
    assert_target_empty(target_dsn, allowed=("zoo.lossy_target",))


NARROWING = [
    ("numeric(12,4)", "numeric(12,2)", "99.1234"),
    ("timestamp with time zone", "date", "2025-03-01 12:34:56+00"),
]


@pytest.mark.parametrize(
    ("old_type", "new_type", "value"), NARROWING, ids=[f"{o}->{n}" for o, n, _ in NARROWING]
)
def test_lossy_type_change_while_streaming_stops_with_exit_65(
    empty_source: str, target_dsn: str, tmp_path: Path, old_type: str, new_type: str, value: str
) -> None:
    with psycopg.connect(empty_source, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA zoo")
        conn.execute(f"CREATE TABLE zoo.prices (id int PRIMARY KEY, unit_price {old_type})")
        conn.execute(
            f"INSERT INTO zoo.prices SELECT i, %s::{old_type} FROM generate_series(1, 10) i", (value,)
        )
    config = harness.zoo_config("zoo-narrow", mode="full+incremental")
    tables = [e.name for e in read_catalog(empty_source, config)]
    names = prepare_stream(source_dsn=empty_source, config=config, tables=tables)
    harness.assert_all_ok(
        harness.run_full_workers(
            harness.plan(empty_source, config), source_dsn=empty_source, target_dsn=target_dsn
        )
    )
    stream = harness.StreamProcess(
        harness.stream_spec(config, tables, names), empty_source, target_dsn, log=tmp_path / "stream.log"
    ).start()
    try:
        stream.wait_streaming(target_dsn)
        with psycopg.connect(empty_source, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE zoo.prices ALTER COLUMN unit_price TYPE {new_type}")
            conn.execute("UPDATE zoo.prices SET id = id + 100 WHERE id = 1")
        code = stream.wait_exit(timeout=90)
    finally:
        if stream.proc is not None and stream.proc.poll() is None:
            stream.stop()
    log = stream.log_tail(40)
    assert code == EXIT_DATA, log
    assert "unit_price" in log and old_type in log and new_type in log, log
    # The target kept its type and the change was not applied.
    kept = _rows(
        target_dsn,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
        """ WHERE attrelid = 'zoo.prices'::regclass AND attname = 'unit_price'""",
    )
    assert kept == [(old_type,)]
    assert _rows(target_dsn, "SELECT count(*) FROM zoo.prices WHERE id = 1") == [(1,)]


UNREPRODUCIBLE = {
    # A column of an extension's type, the extension not installed on the target.
    "extension-type": (
        "CREATE EXTENSION hstore; CREATE TABLE zoo.ext_t (id int PRIMARY KEY, attrs hstore);"
        " INSERT INTO zoo.ext_t VALUES (1, 'a=>1')",
        "",
        ("hstore", "CREATE EXTENSION"),
    ),
    # A generated column calling a user function the target lacks.
    "user-function": (
        "CREATE FUNCTION zoo.double_it(int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT $1 * 2';"
        " CREATE TABLE zoo.fn_t (id int PRIMARY KEY,"
        " twice int GENERATED ALWAYS AS (zoo.double_it(id)) STORED);"
        " INSERT INTO zoo.fn_t (id) VALUES (1)",
        "",
        ("double_it",),
    ),
    # An enum the target already has, with fewer labels.
    "enum-differs": (
        "CREATE TYPE zoo.mood AS ENUM ('sad', 'ok', 'happy');"
        " CREATE TABLE zoo.enum_t (id int PRIMARY KEY, m zoo.mood);"
        " INSERT INTO zoo.enum_t VALUES (1, 'happy')",
        "CREATE SCHEMA zoo; CREATE TYPE zoo.mood AS ENUM ('sad', 'ok')",
        ("mood", "happy"),
    ),
}


@pytest.mark.parametrize("case", sorted(UNREPRODUCIBLE))
def test_table_the_target_cannot_reproduce_is_refused_before_writing(
    empty_source: str, target_dsn: str, case: str
) -> None:
    source_sql, target_sql, expected = UNREPRODUCIBLE[case]
    with psycopg.connect(empty_source, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA zoo")
        conn.execute(source_sql)
    if target_sql:
        with psycopg.connect(target_dsn, autocommit=True) as conn:
            conn.execute(target_sql)
    finished = harness.run_full_workers(
        harness.plan(empty_source, harness.zoo_config("zoo-unrepro")),
        source_dsn=empty_source,
        target_dsn=target_dsn,
    )
    assert [f.returncode for f in finished] == [EXIT_DATA] * len(finished), [f.describe() for f in finished]
    message = finished[0].stderr
    for word in expected:
        assert word in message, message
    assert_target_empty(target_dsn)
