"""Held-out schemas, streamed: full+incremental over shapes the zoo does not have, with changes
the zoo's workload does not make; the target must end equal to the source by the per-row digest
of every column (or the task is refused before anything is created).

Each test: its own source database (PostgreSQL 18 and 15), ``prepare_stream`` (publication and
slot), the planner's three full workers, one ``zdtp-worker incremental`` process, a workload,
then the digest, which waits until the stream has caught up.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.integration.schema_zoo import held_out as ho
from tests.integration.schema_zoo.test_held_out_full import MORE_TYPES_SQL
from tests.integration.schema_zoo.test_zoo_refusals import assert_target_empty
from zdtp_provider.database_steps import prepare_stream
from zdtp_provider.planner import read_catalog
from zdtp_worker.contract.errors import WorkerError


def _stream(source: str, target: str, tmp_path: Path, *workload: str) -> None:
    stream = ho.Stream(source, target, tmp_path)
    try:
        ho.run_sql(source, *workload)
        stream.wait_same()
    finally:
        code = stream.stop()
    assert code == 0, stream.proc.log_tail()


def test_multi_level_partitions_stream(empty_source: str, target_dsn: str, tmp_path: Path) -> None:
    # A partition that is itself partitioned (LIST → RANGE / HASH): changes in the leaves arrive
    # under the root (publish_via_partition_root), including moves between sub-partitions.
    ho.run_sql(empty_source, ho.multi_level_partitions(2000))
    _stream(
        empty_source,
        target_dsn,
        tmp_path,
        "INSERT INTO ho.m SELECT 'fr', date '2024-03-01', i, 'new' FROM generate_series(5001, 5100) i",
        "UPDATE ho.m SET at = date '2030-01-01' WHERE region = 'de' AND id % 8 = 0",  # eu_2024 → eu_rest
        "UPDATE ho.m SET region = 'us' WHERE region = 'jp' AND id < 400",  # m_rest → m_us_*
        "UPDATE ho.m SET id = id + 100000 WHERE region = 'us' AND id % 10 = 2",  # hash bucket moves
        "DELETE FROM ho.m WHERE region = 'fr' AND id % 5 = 0",
        "UPDATE ho.m SET v = 'touched' WHERE id % 3 = 0",
    )


def test_deferrable_keys_swapped_in_one_statement(empty_source: str, target_dsn: str, tmp_path: Path) -> None:
    # DEFERRABLE primary and unique keys let one statement swap two rows' values; applied row by
    # row on a non-deferrable target key, the first row would collide with the second.
    ho.run_sql(
        empty_source,
        """
        CREATE SCHEMA ho;
        CREATE TABLE ho.seat (id int PRIMARY KEY DEFERRABLE INITIALLY IMMEDIATE,
                              code text NOT NULL UNIQUE DEFERRABLE INITIALLY DEFERRED, v int);
        -- What the refusal below tells the user to do (a deferrable key is no replica identity).
        ALTER TABLE ho.seat REPLICA IDENTITY FULL;
        INSERT INTO ho.seat SELECT i, 'c' || i, i FROM generate_series(1, 1000) i;
        ANALYZE;
        """,
    )
    _stream(
        empty_source,
        target_dsn,
        tmp_path,
        "UPDATE ho.seat SET code = CASE id WHEN 1 THEN 'c2' ELSE 'c1' END WHERE id IN (1, 2)",
        "UPDATE ho.seat SET id = CASE id WHEN 10 THEN 11 ELSE 10 END WHERE id IN (10, 11)",
        "BEGIN; UPDATE ho.seat SET code = 'c21' WHERE id = 20; UPDATE ho.seat SET code = 'c20' WHERE id = 21;"
        " COMMIT",
        "DELETE FROM ho.seat WHERE id = 201",
        "UPDATE ho.seat SET id = id + 1 WHERE id BETWEEN 100 AND 200",  # a shifted block of keys
    )


def test_deferrable_primary_key_without_full_identity_is_refused(empty_source: str, target_dsn: str) -> None:
    # PostgreSQL cannot use a DEFERRABLE primary key as replica identity: publishing the table
    # would make the source's own UPDATEs fail ("does not have a replica identity").
    ho.run_sql(
        empty_source,
        """
        CREATE SCHEMA ho;
        CREATE TABLE ho.seat (id int PRIMARY KEY DEFERRABLE, v int);
        INSERT INTO ho.seat SELECT i, i FROM generate_series(1, 10) i;
        """,
    )
    config = ho.config("ho-deferrable", mode="full+incremental")
    tables = [e.name for e in read_catalog(empty_source, config)]
    with pytest.raises(WorkerError) as refused:
        prepare_stream(source_dsn=empty_source, config=config, tables=tables)
    message = str(refused.value)
    assert "ho.seat" in message and "DEFERRABLE" in message and "REPLICA IDENTITY FULL" in message, message
    ho.run_sql(empty_source, "UPDATE ho.seat SET v = 0")  # the source's own writes still work
    assert ho.rows(empty_source, "SELECT pubname FROM pg_publication") == []
    assert_target_empty(target_dsn)


def test_truncate_cascade_and_restart_identity(empty_source: str, target_dsn: str, tmp_path: Path) -> None:
    # TRUNCATE … CASCADE reaches the referencing table (both synced); RESTART IDENTITY resets the
    # source's sequences (the target's may stay ahead, never behind); several tables in one
    # TRUNCATE; rows inserted after each.
    ho.run_sql(
        empty_source,
        """
        CREATE SCHEMA ho;
        CREATE TABLE ho.customer (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text);
        CREATE TABLE ho.orders (id bigserial PRIMARY KEY, customer int REFERENCES ho.customer, total numeric);
        CREATE TABLE ho.log (id int PRIMARY KEY, msg text);
        INSERT INTO ho.customer (name) SELECT 'c' || i FROM generate_series(1, 300) i;
        INSERT INTO ho.orders (customer, total) SELECT 1 + i % 300, i / 4.0 FROM generate_series(1, 1200) i;
        INSERT INTO ho.log SELECT i, 'm' || i FROM generate_series(1, 100) i;
        ANALYZE;
        """,
    )
    _stream(
        empty_source,
        target_dsn,
        tmp_path,
        "TRUNCATE ho.customer CASCADE",
        "INSERT INTO ho.customer (name) SELECT 'again' || i FROM generate_series(1, 20) i",
        "INSERT INTO ho.orders (customer, total) SELECT 301 + i % 20, i FROM generate_series(1, 40) i",
        "TRUNCATE ho.orders, ho.log RESTART IDENTITY",
        "INSERT INTO ho.orders (customer, total) SELECT 301, i FROM generate_series(1, 5) i",
        "INSERT INTO ho.log VALUES (1, 'after')",
    )


def test_dropped_columns_before_and_while_streaming(
    empty_source: str, target_dsn: str, tmp_path: Path
) -> None:
    # Dropped columns leave gaps in attnum (the source's tuples still carry them): the stream
    # maps columns by name. One more column is dropped while streaming.
    ho.run_sql(
        empty_source,
        ho.GAPPY_TABLE,
        "ANALYZE",
    )
    _stream(
        empty_source,
        target_dsn,
        tmp_path,
        "UPDATE ho.gappy SET b = 'u' || id, d = '2021-01-01' WHERE id % 4 = 0",
        "INSERT INTO ho.gappy (id, a, b, c) SELECT i, i, 'new', 1 FROM generate_series(2001, 2100) i",
        "DELETE FROM ho.gappy WHERE id % 7 = 0",
    )


INHERIT_SQL = """
CREATE SCHEMA ho;
CREATE TABLE ho.city (id int PRIMARY KEY, name text, population int);
CREATE TABLE ho.capital (state char(2)) INHERITS (ho.city);
ALTER TABLE ho.capital ADD PRIMARY KEY (id);
-- The same keys in parent and child (each table's key is its own).
INSERT INTO ho.city SELECT i, 'city ' || i, i FROM generate_series(1, 500) i;
INSERT INTO ho.capital SELECT i, 'cap ' || i, i, 'S' FROM generate_series(1, 100) i;
ANALYZE;
"""


def test_inheritance_streams_each_table_by_itself(empty_source: str, target_dsn: str, tmp_path: Path) -> None:
    # On the source, UPDATE/DELETE/TRUNCATE of ONLY the parent leave the child's rows with the same
    # key alone; the target (parent and child linked as on the source) must do the same.
    ho.run_sql(empty_source, INHERIT_SQL)
    _stream(
        empty_source,
        target_dsn,
        tmp_path,
        "UPDATE ONLY ho.city SET name = 'renamed' WHERE id <= 10",
        "DELETE FROM ONLY ho.city WHERE id BETWEEN 11 AND 20",
        "UPDATE ho.capital SET population = -1 WHERE id <= 5",
        "INSERT INTO ho.capital VALUES (1001, 'new cap', 1, 'N')",
        "TRUNCATE ONLY ho.city",
        "INSERT INTO ho.city VALUES (1, 'back', 1)",
    )


def test_unlogged_table_in_a_stream_is_refused_before_anything(empty_source: str, target_dsn: str) -> None:
    # An UNLOGGED table writes no WAL: nothing of it could ever be streamed, and PostgreSQL refuses
    # to publish it. zdtp must say so (table, reason, fix) before it creates a slot.
    ho.run_sql(
        empty_source,
        """
        CREATE SCHEMA ho;
        CREATE TABLE ho.fine (id int PRIMARY KEY);
        CREATE UNLOGGED TABLE ho.scratch (id int PRIMARY KEY, v text);
        INSERT INTO ho.scratch SELECT i, 'v' FROM generate_series(1, 10) i;
        """,
    )
    config = ho.config("ho-unlogged", mode="full+incremental")
    tables = [e.name for e in read_catalog(empty_source, config)]
    with pytest.raises(WorkerError) as refused:
        prepare_stream(source_dsn=empty_source, config=config, tables=tables)
    message = str(refused.value)
    assert "ho.scratch" in message and "UNLOGGED" in message.upper() and "SET LOGGED" in message, message
    assert ho.rows(empty_source, "SELECT pubname FROM pg_publication") == []
    assert (
        ho.rows(
            empty_source, "SELECT slot_name FROM pg_replication_slots WHERE database = current_database()"
        )
        == []
    )
    assert_target_empty(target_dsn)


def test_publishing_a_parent_leaves_its_unsynced_children_alone(empty_source: str) -> None:
    # Without ONLY, PostgreSQL publishes every table that INHERITS from a listed one; a keyless
    # child the task does not name would then have its own UPDATE/DELETE on the source fail.
    ho.run_sql(
        empty_source,
        """
        CREATE SCHEMA ho;
        CREATE TABLE ho.city (id int PRIMARY KEY, name text);
        CREATE TABLE ho.kid (note text) INHERITS (ho.city);
        INSERT INTO ho.kid VALUES (1, 'k', 'n');
        """,
    )
    # One slot name per source database (slots are per server).
    config = ho.config(
        "ho-only-" + empty_source.rsplit("_", 1)[-1], mode="incremental", include=[], tables=["ho.city"]
    )
    tables = [e.name for e in read_catalog(empty_source, config)]
    names = prepare_stream(source_dsn=empty_source, config=config, tables=tables)
    published = "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %s"
    assert ho.rows(empty_source, published, (names["publication"],)) == [("ho.city",)]
    ho.run_sql(empty_source, "UPDATE ho.kid SET note = 'still writable'", "DELETE FROM ho.kid")


def test_virtual_generated_columns_pg18(pg_server, target_dsn: str, tmp_path: Path) -> None:
    # PostgreSQL 18's VIRTUAL generated columns (computed on read, never stored or sent): created
    # as virtual on the target, left out of COPY and of the stream; old and new rows read alike.
    name = pg_server.create_database("src")
    source = pg_server.dsn(name)
    try:
        ho.run_sql(
            source,
            """
            CREATE SCHEMA ho;
            CREATE TABLE ho.virt (id int PRIMARY KEY, qty int NOT NULL, price numeric(10,2),
                                  total numeric GENERATED ALWAYS AS (qty * price) VIRTUAL,
                                  stored text GENERATED ALWAYS AS ('#' || id) STORED);
            INSERT INTO ho.virt (id, qty, price) SELECT i, i % 7, i / 3.0 FROM generate_series(1, 800) i;
            ANALYZE;
            """,
        )
        _stream(
            source,
            target_dsn,
            tmp_path,
            "UPDATE ho.virt SET qty = qty + 1 WHERE id % 3 = 0",
            "INSERT INTO ho.virt (id, qty, price) VALUES (5000, 2, 2.5)",
            "DELETE FROM ho.virt WHERE id % 11 = 0",
        )
        kinds = (
            "SELECT attname, attgenerated::text FROM pg_attribute"
            " WHERE attrelid = 'ho.virt'::regclass AND attgenerated <> '' ORDER BY 1"
        )
        assert ho.rows(target_dsn, kinds) == [("stored", "s"), ("total", "v")]
    finally:
        pg_server.drop_database(name)


def test_existing_target_with_other_column_order_streams(
    empty_source: str, target_dsn: str, tmp_path: Path
) -> None:
    # A target table someone created with the columns in another order (and a dropped column of
    # its own): the copy and every streamed change land by column name, never by position.
    ho.run_sql(
        empty_source,
        """
        CREATE SCHEMA ho;
        CREATE TABLE ho.ordered (id int PRIMARY KEY, a text, b int, c timestamptz, d numeric(10,2));
        INSERT INTO ho.ordered
        SELECT i, 'a' || i, i * 2, timestamptz '2024-01-01' + i * interval '1 min', i / 7.0
        FROM generate_series(1, 1000) i;
        ANALYZE;
        """,
    )
    ho.run_sql(
        target_dsn,
        """
        CREATE SCHEMA ho;
        CREATE TABLE ho.ordered (d numeric(10,2), zzz text, c timestamptz, b int, a text, id int PRIMARY KEY);
        ALTER TABLE ho.ordered DROP COLUMN zzz;
        """,
    )
    stream = ho.Stream(empty_source, target_dsn, tmp_path)
    try:
        ho.run_sql(
            empty_source,
            "UPDATE ho.ordered SET b = -b, a = 'u' || id WHERE id % 3 = 0",
            "INSERT INTO ho.ordered VALUES (5000, 'new', 1, '2030-01-01', 9.99)",
            "UPDATE ho.ordered SET id = id + 10000 WHERE id % 10 = 1",
            "DELETE FROM ho.ordered WHERE id % 7 = 0",
        )
        digest_wait = ho.digest.wait_same
        digest_wait(
            empty_source,
            target_dsn,
            schemas=["ho"],
            sequences="skip",
            shape=False,
            timeout=ho.STREAM_TIMEOUT,
            alive=stream.proc.check_alive,
        )
    finally:
        code = stream.stop()
    assert code == 0, stream.proc.log_tail()


def test_more_types_stream(empty_source: str, target_dsn: str, tmp_path: Path) -> None:
    # The held-out types (multiranges, arrays of enums/domains/composites, domain over an array,
    # tsvector, money, pg_lsn, "char", jsonpath, ...) through pgoutput's text and back.
    ho.run_sql(empty_source, MORE_TYPES_SQL)
    _stream(
        empty_source,
        target_dsn,
        tmp_path,
        "UPDATE ho.types SET mr = '{[7,8),[10,12)}', colors = '{green,red,green}', smalls = '{3}',"
        " il = '{9,8}', pairs = ARRAY[ROW(2, 'x\"y'), NULL]::ho.pair[], tsv = 'new:2B', tsq = 'a | b',"
        " m = '12.34', o = 7, ch = 'z', lsn = '1/2', iv = '-3 days', vb = B'1', pt = '(2,3)',"
        " js = '$.x' WHERE id IN (1, 2, 3)",
        "INSERT INTO ho.types (id, dmr, colors, m) VALUES (9000, '{[2001-01-01,2001-02-01)}', '{}', '-0.01')",
        "UPDATE ho.types SET mr = NULL, m = m * 2 WHERE id BETWEEN 100 AND 200",
        "DELETE FROM ho.types WHERE id % 9 = 0",
    )


DETACH_TIMEOUT = 45  # seconds: converge, or the worker must have stopped naming the partition


def test_detach_partition_while_streaming_converges_or_stops(
    pg_server, target_dsn: str, tmp_path: Path
) -> None:
    # DETACH PARTITION writes no row changes: on the source the partition's rows leave the parent
    # (and the partition becomes a table of its own); pgoutput sends nothing. The stream must then
    # reproduce it or stop with exit 65 naming the partition — never carry on with the target's
    # parent still holding those rows. (PostgreSQL 18 only: the behaviour does not differ in 15.)
    name = pg_server.create_database("src")
    source = pg_server.dsn(name)
    try:
        ho.run_sql(
            source,
            """
            CREATE SCHEMA ho;
            CREATE TABLE ho.p (id int NOT NULL, k int NOT NULL, v text, PRIMARY KEY (k, id))
                PARTITION BY LIST (k);
            CREATE TABLE ho.p1 PARTITION OF ho.p FOR VALUES IN (1);
            CREATE TABLE ho.p2 PARTITION OF ho.p FOR VALUES IN (2);
            INSERT INTO ho.p SELECT i, 1 + i % 2, 'v' || i FROM generate_series(1, 400) i;
            ANALYZE;
            """,
        )
        stream = ho.Stream(source, target_dsn, tmp_path, include=[], tables=["ho.p"])
        try:
            ho.run_sql(source, "ALTER TABLE ho.p DETACH PARTITION ho.p2", "UPDATE ho.p SET v = 'after'")
            try:
                ho.digest.wait_same(
                    source,
                    target_dsn,
                    schemas=["ho"],
                    tables=["ho.p"],
                    sequences="skip",
                    timeout=DETACH_TIMEOUT,
                    alive=stream.proc.check_alive,
                )
            except AssertionError as exc:
                stopped = stream.proc.proc is not None and stream.proc.proc.poll() == 65
                assert stopped and "ho.p2" in stream.proc.log_tail(), f"diverged silently: {exc}"
        finally:
            stream.stop()
    finally:
        pg_server.drop_database(name)


def test_row_level_security_for_the_stream_role_is_refused(empty_source: str, target_dsn: str) -> None:
    # The decoded changes are complete, but the copy and the stream's re-reads of rows would see
    # only what the policies show: refused before a publication or slot exists.
    role = "ho_streamer_" + empty_source.rsplit("_", 1)[-1]
    ho.run_sql(
        empty_source,
        f"""
        CREATE SCHEMA ho;
        CREATE TABLE ho.secret (id int PRIMARY KEY, tenant int NOT NULL);
        INSERT INTO ho.secret SELECT i, i % 3 FROM generate_series(1, 30) i;
        ALTER TABLE ho.secret ENABLE ROW LEVEL SECURITY;
        CREATE POLICY tenant_1 ON ho.secret FOR SELECT USING (tenant = 1);
        CREATE ROLE {role} LOGIN REPLICATION PASSWORD 'pw';
        GRANT USAGE ON SCHEMA ho TO {role};
        GRANT SELECT ON ho.secret TO {role};
        GRANT CREATE ON DATABASE "{empty_source.rsplit("/", 1)[-1]}" TO {role};
        """,
    )
    try:
        streamer = re.sub(r"//[^@]*@", f"//{role}:pw@", empty_source)
        config = ho.config("ho-rls-cdc", mode="full+incremental")
        with pytest.raises(WorkerError) as refused:
            prepare_stream(source_dsn=streamer, config=config, tables=["ho.secret"])
        message = str(refused.value)
        assert "ho.secret" in message and "row-level security" in message and "BYPASSRLS" in message, message
        assert ho.rows(empty_source, "SELECT pubname FROM pg_publication") == []
        slots = "SELECT slot_name FROM pg_replication_slots WHERE database = current_database()"
        assert ho.rows(empty_source, slots) == []
        assert_target_empty(target_dsn)
    finally:
        ho.run_sql(empty_source, f"DROP OWNED BY {role}; DROP ROLE {role}")


def test_edge_value_keys_stream(empty_source: str, target_dsn: str, tmp_path: Path) -> None:
    # Keys that are edge values of their type (float8 NaN/±Infinity, numeric NaN, timestamptz
    # ±infinity, bytea) updated, moved and deleted through the stream: the applier matches them
    # by key text, so each must round-trip exactly.
    ho.run_sql(
        empty_source,
        """
        CREATE SCHEMA ho;
        CREATE TABLE ho.fkey (k float8 PRIMARY KEY, v text);
        INSERT INTO ho.fkey SELECT i / 7.0, 'v' FROM generate_series(-50, 50) i;
        INSERT INTO ho.fkey VALUES ('NaN', 'nan'), ('Infinity', 'inf'), (1e-320, 'denormal');
        CREATE TABLE ho.mixed (n numeric NOT NULL, t timestamptz NOT NULL, b bytea NOT NULL, v text,
                               PRIMARY KEY (n, t, b));
        INSERT INTO ho.mixed VALUES ('NaN', 'infinity', '\\x00', 'a'), ('-Infinity', '-infinity', '', 'b'),
            (0.1, '2000-01-01', '\\xff00', 'c');
        ANALYZE;
        """,
    )
    _stream(
        empty_source,
        target_dsn,
        tmp_path,
        "UPDATE ho.fkey SET v = 'touched' WHERE k = 'NaN' OR k = 'Infinity' OR k = 1e-320",
        "UPDATE ho.fkey SET k = '-Infinity' WHERE k = 'Infinity'",
        "DELETE FROM ho.fkey WHERE k = 'NaN'",
        "INSERT INTO ho.fkey VALUES ('NaN', 'again')",
        "UPDATE ho.fkey SET k = k + 1000 WHERE k > 0 AND k < 1",
        "UPDATE ho.mixed SET v = 'touched'",
        "UPDATE ho.mixed SET t = 'infinity' WHERE v = 'touched' AND n = 0.1",
        "DELETE FROM ho.mixed WHERE n = '-Infinity'",
    )
