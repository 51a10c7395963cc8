"""Held-out schemas, the formerly documented gaps: large objects, xml, key collations, and the
plan refusing what the worker's pre-flight refuses. Each case copies exactly (per-row digest of
every column) or is refused before anything is written, naming the table, the column and the fix.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from pathlib import Path

import pytest

from tests.fixtures.postgres import PgServer
from tests.integration.schema_zoo import harness
from tests.integration.schema_zoo import held_out as ho
from zdtp_provider.database_steps import prepare_stream
from zdtp_provider.planner import PlanningError, check_streamable, read_catalog
from zdtp_worker.contract.errors import WorkerError

LARGE_OBJECTS_SQL = """
CREATE SCHEMA ho;
CREATE EXTENSION lo;
CREATE TABLE ho.doc (id int PRIMARY KEY, blob lo);
INSERT INTO ho.doc SELECT i, lo_from_bytea(0, convert_to('doc ' || i, 'UTF8')) FROM generate_series(1, 5) i;
CREATE TABLE ho.oid_ref (id int PRIMARY KEY, note text, ref oid);
INSERT INTO ho.oid_ref SELECT i, 'n' || i, CASE WHEN i = 7 THEN (SELECT min(blob) FROM ho.doc) END
FROM generate_series(1, 50) i;
-- oid values that are not large objects (catalog oids, counters): copied as numbers.
CREATE TABLE ho.oid_plain (id int PRIMARY KEY, o oid, os oid[]);
INSERT INTO ho.oid_plain VALUES (1, 'pg_class'::regclass, ARRAY[1259, 0]::oid[]), (2, 4294967295, '{}'),
                               (3, NULL, NULL);
ANALYZE;
"""


def _failed_for(finished: list[ho.harness.Finished], table: str) -> list[ho.harness.Finished]:
    return [f for f in finished if any(str(t.source) == table for t in f.spec.tables)]


def test_large_object_references_are_refused_before_writing(empty_source: str, target_dsn: str) -> None:
    # An oid/lo column copies the number; the large object stays behind. The lo domain is refused
    # always, a plain oid column when a value names an existing large object; other oids copy.
    ho.run_sql(empty_source, LARGE_OBJECTS_SQL)
    with pytest.raises(PlanningError) as refused:
        read_catalog(empty_source, ho.config("ho-lo"), target_dsn=target_dsn)
    message = str(refused.value)
    assert "ho.doc: column(s) blob (lo, a domain over oid)" in message, message
    assert "ho.oid_ref: column(s) ref (oid)" in message and "pg_dump --large-objects" in message, message
    assert "oid_plain" not in message, message

    finished = ho.full_copy(empty_source, target_dsn)
    for table, column in (("ho.doc", "blob"), ("ho.oid_ref", "ref")):
        mine = _failed_for(finished, table)
        assert mine and all(f.returncode == 65 for f in mine), [f.describe() for f in finished]
        # A worker stops at the first table it refuses: this one, unless its other table came first.
        named = re.search(r"source table (\S+): column\(s\) (\w+) \(", mine[0].stderr)
        assert named and "large objects" in mine[0].stderr, mine[0].stderr
        assert named.groups() in {(table, column), ("ho.doc", "blob"), ("ho.oid_ref", "ref")}, mine[0].stderr
        if len(mine[0].spec.tables) == 1:
            assert named.groups() == (table, column), mine[0].stderr
    assert ho.rows(target_dsn, "SELECT to_regclass('ho.doc'), to_regclass('ho.oid_ref')") == [(None, None)]
    assert ho.rows(target_dsn, "SELECT count(*) FROM pg_largeobject_metadata") == [(0,)]
    # The plain oid values (no large object among them) copy as numbers, once the task leaves the
    # refused tables out (the workers above may have held it beside one of them).
    ho.harness.assert_all_ok(ho.full_copy(empty_source, target_dsn, include=["ho.oid_plain"]))
    ho.digest.assert_same(empty_source, target_dsn, schemas=["ho"], tables=["ho.oid_plain"], sequences="skip")


XML_SQL = """
CREATE SCHEMA ho;
CREATE DOMAIN ho.xdoc AS xml;
CREATE TABLE ho.feed (id int PRIMARY KEY, body xml, parts xml[], d ho.xdoc);
CREATE TABLE ho.plain (id int PRIMARY KEY, v text);
INSERT INTO ho.plain SELECT i, 'p' || i FROM generate_series(1, 300) i;
"""
# Values only a server built with libxml can hold: a document, content with a text node,
# whitespace and an entity, a processing instruction.
XML_VALUES = """
INSERT INTO ho.feed SELECT i,
  CASE i % 4 WHEN 0 THEN NULL WHEN 1 THEN ('<?xml version="1.0"?><a n="' || i || '">x &amp; y</a>')::xml
         WHEN 2 THEN ('text <b>' || i || '</b>  tail')::xml ELSE '<?pi data?><c/>'::xml END,
  ARRAY['<e/>'::xml, NULL], ('<d>' || i || '</d>')::xml
FROM generate_series(1, 500) i;
ANALYZE;
"""


def _holds_xml(dsn: str) -> bool:
    try:
        ho.run_sql(dsn, "SELECT '<x/>'::xml")
    except Exception:
        return False
    return True


def test_xml_is_refused_when_the_target_cannot_hold_it(empty_source: str, target_dsn: str) -> None:
    # The dev target (PostgreSQL 18 embedded) is built without libxml: no xml value can load there,
    # so the table is refused (plan and worker) naming the columns; never a silent text cast.
    assert not _holds_xml(target_dsn)
    ho.run_sql(empty_source, XML_SQL)
    if _holds_xml(empty_source):
        ho.run_sql(empty_source, XML_VALUES)  # PG 15 (Debian, with libxml); PG 18 here: NULLs only
    else:
        ho.run_sql(empty_source, "INSERT INTO ho.feed SELECT i FROM generate_series(1, 50) i; ANALYZE")
    with pytest.raises(PlanningError) as refused:
        read_catalog(empty_source, ho.config("ho-xml"), target_dsn=target_dsn)
    assert "ho.feed: column(s) body, parts, d have type xml" in str(refused.value), refused.value
    assert "libxml" in str(refused.value)

    finished = ho.full_copy(empty_source, target_dsn)
    feed = _failed_for(finished, "ho.feed")
    assert feed and all(f.returncode == 65 for f in feed), [f.describe() for f in finished]
    assert "ho.feed: column(s) body, parts, d have type xml" in feed[0].stderr, feed[0].stderr
    assert ho.rows(target_dsn, "SELECT to_regclass('ho.feed')") == [(None,)]


def test_xml_copies_exactly_between_servers_with_libxml(pg15_server: PgServer) -> None:
    # Both sides built with libxml (Debian's PostgreSQL 15 as source and target): value-exact.
    source, target = pg15_server.create_database("src"), pg15_server.create_database("tgt")
    try:
        ho.run_sql(pg15_server.dsn(source), XML_SQL, XML_VALUES)
        read_catalog(pg15_server.dsn(source), ho.config("ho-xml"), target_dsn=pg15_server.dsn(target))
        ho.copy_and_compare(pg15_server.dsn(source), pg15_server.dsn(target), verify="checksum")
        texts = "SELECT body::text, parts::text[], d::text FROM ho.feed ORDER BY id"
        assert ho.rows(pg15_server.dsn(target), texts) == ho.rows(pg15_server.dsn(source), texts)
    finally:
        pg15_server.drop_database(source)
        pg15_server.drop_database(target)


# Words whose order differs between a linguistic collation and byte order ('a' < 'B' < 'b' vs
# 'B' < 'a' < 'b'; accents, 'ß', digits, punctuation).
WORDS = "ARRAY['a', 'B', 'b', 'ä', 'Äb', 'ß', 'ss', 'é', 'E', '_x', '9', '10', 'z', 'Z', 'ø', 'œ']"


def _copy_words(source: str, target: str) -> list[dict]:
    finished = ho.full_copy(source, target, verify="checksum", chunk_rows=101)
    ho.harness.assert_all_ok(finished)
    ho.digest.assert_same(source, target, schemas=["ho"], sequences="skip", shape=False)
    return [e for f in finished for e in _events(f.stderr) if e.get("event") in ("plan", "single_chunk")]


def _events(stderr: str) -> list[dict]:
    out = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def _plan_events(events: list[dict], table: str) -> list[dict]:
    return [e for e in events if e.get("event") == "plan" and e["table"] == table]


def test_key_the_target_orders_differently_is_copied_as_one_chunk(empty_source: str, target_dsn: str) -> None:
    # An enum key whose sort order differs from its creation order (ADD VALUE BEFORE) on the
    # source, and an enum of the same labels in creation order that the target already has: key
    # ranges would hold other rows on each side (the target's deletes and checksums), so the table
    # is copied as one chunk, exactly, and the worker says why.
    ho.run_sql(
        empty_source,
        """
        CREATE SCHEMA ho;
        CREATE TYPE ho.level AS ENUM ('low', 'high');
        """,
        "ALTER TYPE ho.level ADD VALUE 'mid' BEFORE 'high'",
        """
        CREATE TABLE ho.ranked (lvl ho.level, n int, v text, PRIMARY KEY (lvl, n));
        INSERT INTO ho.ranked SELECT l, i, 'v' || i FROM unnest(enum_range(NULL::ho.level)) l,
                                                      generate_series(1, 300) i;
        ANALYZE;
        """,
    )
    ho.run_sql(target_dsn, "CREATE SCHEMA ho; CREATE TYPE ho.level AS ENUM ('low', 'high', 'mid')")
    events = _copy_words(empty_source, target_dsn)
    single = [e for e in events if e.get("event") == "single_chunk"]
    assert single and single[0]["columns"][0].startswith("lvl (source enum order ['low', 'mid', 'high']"), (
        events
    )
    assert [e["chunks"] for e in _plan_events(events, "ho.ranked")] == [1], events

    # The same enum order on both sides: chunked by key as usual.
    ho.run_sql(target_dsn, "DROP SCHEMA ho CASCADE; DROP SCHEMA zdtp CASCADE")
    events = _copy_words(empty_source, target_dsn)
    assert not [e for e in events if e.get("event") == "single_chunk"], events
    assert _plan_events(events, "ho.ranked")[0]["chunks"] > 1, events


def _icu_database(server: PgServer, prefix: str) -> str:
    """A database whose default collation is ICU's root locale (linguistic order)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    ho.run_sql(
        server.dsn(),
        f"CREATE DATABASE {name} TEMPLATE template0 LOCALE 'C.UTF-8' LOCALE_PROVIDER icu ICU_LOCALE 'und'",
    )
    return name


def test_icu_keys_chunk_where_both_sides_order_alike(pg15_server: PgServer, target_dsn: str) -> None:
    # Debian's PostgreSQL 15 has ICU (the embedded 18 has not). A source database whose default
    # collation is ICU's root locale, text keys in it and in a non-deterministic collation:
    # into another PostgreSQL 15 database of the same ICU collations, chunked by key (same order);
    # into the 18 target (default collation: bytes), copied as one chunk; exact both ways.
    ddl = """
        CREATE SCHEMA ho;
        CREATE COLLATION ho.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
    """
    source = _icu_database(pg15_server, "icusrc")
    twin = _icu_database(pg15_server, "icutgt")
    try:
        src = pg15_server.dsn(source)
        ho.run_sql(
            src,
            ddl,
            f"""
            CREATE TABLE ho.words (k text PRIMARY KEY, n int NOT NULL, v text);
            INSERT INTO ho.words SELECT w || '-' || i, i, repeat('v', i % 7)
            FROM unnest({WORDS}) w, generate_series(1, 90) i;
            CREATE TABLE ho.icu_named (k text COLLATE "und-x-icu" PRIMARY KEY);
            INSERT INTO ho.icu_named SELECT 'k' || i FROM generate_series(1, 10) i;
            CREATE TABLE ho.ci_key (k text COLLATE ho.ci PRIMARY KEY, n int);
            INSERT INTO ho.ci_key SELECT w || i, i FROM unnest(ARRAY['a', 'B', 'é', 'ß', 'Straße']) w,
                                                          generate_series(1, 200) i;
            ANALYZE;
            """,
        )
        ho.run_sql(pg15_server.dsn(twin), ddl)
        events = _copy_words(src, pg15_server.dsn(twin))
        assert not [e for e in events if e.get("event") == "single_chunk"], events
        assert _plan_events(events, "ho.words")[0]["chunks"] > 1, events
        assert _plan_events(events, "ho.ci_key")[0]["chunks"] > 1, events
        # Case-insensitive uniqueness holds on the target (its key was built in that collation).
        with pytest.raises(Exception, match="duplicate key"):
            ho.run_sql(pg15_server.dsn(twin), "INSERT INTO ho.ci_key VALUES ('A1', 0)")

        # Into PostgreSQL 18 (no ICU): the ICU-default key becomes one chunk; the table keyed by
        # the ICU collation the target cannot create is refused before anything is written.
        finished = ho.full_copy(src, target_dsn, verify="checksum", chunk_rows=101, include=["ho.words"])
        ho.harness.assert_all_ok(finished)
        ho.digest.assert_same(
            src, target_dsn, schemas=["ho"], tables=["ho.words"], sequences="skip", shape=False
        )
        events = [e for f in finished for e in _events(f.stderr)]
        single = [e for e in events if e.get("event") == "single_chunk"]
        assert single and "k (source icu und" in single[0]["columns"][0], events
        for table, collation in (("ho.ci_key", "ho.ci"), ("ho.icu_named", "und-x-icu")):
            refused = ho.full_copy(src, target_dsn, include=[table])
            assert [f.returncode for f in refused] == [65], [f.describe() for f in refused]
            message = refused[0].stderr
            assert table in message and collation in message and "create that collation" in message, message
            assert ho.rows(target_dsn, "SELECT to_regclass(%s)", (table,)) == [(None,)]
    finally:
        pg15_server.drop_database(source)
        pg15_server.drop_database(twin)


def test_plan_refuses_what_the_worker_preflight_refuses(
    empty_source: str, target_dsn: str, tmp_path: Path
) -> None:
    # Row-level security and withheld column privileges for the role zdtp plans with: refused by
    # the plan (all tables at once, each with its fix), before any worker or pod exists.
    role = "ho_plan_" + empty_source.rsplit("_", 1)[-1]
    ho.run_sql(
        empty_source,
        f"""
        CREATE SCHEMA ho;
        CREATE TABLE ho.secret (id int PRIMARY KEY, tenant int NOT NULL);
        ALTER TABLE ho.secret ENABLE ROW LEVEL SECURITY;
        CREATE POLICY only_1 ON ho.secret FOR SELECT USING (tenant = 1);
        CREATE TABLE ho.partial (id int PRIMARY KEY, v text, hidden text);
        CREATE TABLE ho.fine (id int PRIMARY KEY);
        CREATE ROLE {role} LOGIN PASSWORD 'pw';
        GRANT USAGE ON SCHEMA ho TO {role};
        GRANT SELECT ON ho.secret, ho.fine TO {role};
        GRANT SELECT (id, v) ON ho.partial TO {role};
        """,
    )
    try:
        reader = re.sub(r"//[^@]*@", f"//{role}:pw@", empty_source)
        with pytest.raises(PlanningError) as refused:
            read_catalog(reader, ho.config("ho-plan"), target_dsn=target_dsn)
        message = str(refused.value)
        assert "ho.secret has row-level security" in message and "BYPASSRLS" in message, message
        assert "ho.partial: the source role may not read column(s) hidden" in message, message
        assert "ho.fine" not in message, message
        # `zdtp plan` with no target at hand refuses the same, from the source alone.
        task = tmp_path / "task.yaml"
        task.write_text(
            "name: ho-plan\nsource_conn_id: ho_source\ntarget_conn_id: ho_target\ninclude: ['ho.*']\n"
        )
        done = harness.run_cli("plan", str(task), "--source-dsn", reader)
        assert done.returncode != 0, done.stdout
        assert "ho.secret has row-level security" in done.stderr, done.stderr
        assert "ho.partial: the source role may not read column(s) hidden" in done.stderr, done.stderr
        # The owner plans the same tables without a refusal.
        assert len(read_catalog(empty_source, ho.config("ho-plan"), target_dsn=target_dsn)) == 3
    finally:
        ho.run_sql(empty_source, f"DROP OWNED BY {role}; DROP ROLE {role}")


def test_stream_refuses_xml_and_large_object_columns(empty_source: str) -> None:
    # Logical decoding sends xml in its output form (the XML declaration dropped) and never the
    # large objects an oid column names: a CDC task on such tables is refused by the plan and by
    # prepare_stream (the DAG's first task) before any publication or slot exists.
    ho.run_sql(
        empty_source,
        """
        CREATE SCHEMA ho;
        CREATE EXTENSION lo;
        CREATE TABLE ho.feed (id int PRIMARY KEY, body xml);
        CREATE TABLE ho.doc (id int PRIMARY KEY, blob lo);
        CREATE TABLE ho.fine (id int PRIMARY KEY, v text);
        """,
    )
    config = ho.config("ho-stream-types", mode="full+incremental")
    tables = [e.name for e in read_catalog(empty_source, config)]
    with pytest.raises(PlanningError) as planned:
        check_streamable(empty_source, config, tables)
    with pytest.raises(WorkerError) as prepared:
        prepare_stream(source_dsn=empty_source, config=config, tables=tables)
    for message in (str(planned.value), str(prepared.value)):
        assert "ho.feed: column(s) body have type xml" in message and "XML declaration" in message, message
        assert "ho.doc: column(s) blob (lo, a domain over oid)" in message, message
        assert "ho.fine" not in message, message
    assert ho.rows(empty_source, "SELECT pubname FROM pg_publication") == []
    slots = "SELECT slot_name FROM pg_replication_slots WHERE database = current_database()"
    assert ho.rows(empty_source, slots) == []


def test_aclitem_columns_copy_by_role_name(empty_source: str, target_dsn: str) -> None:
    # aclitem has no binary form, and its text form names roles (their OIDs differ per server):
    # copied as text, by name; roles the target lacks are refused before anything is written.
    role = "ho_acl_" + uuid.uuid4().hex[:8]
    ho.run_sql(
        empty_source,
        f"""
        CREATE ROLE {role};
        CREATE SCHEMA ho;
        CREATE TABLE ho.grants (id int PRIMARY KEY, one aclitem, many aclitem[]);
        INSERT INTO ho.grants
        SELECT i, '{role}=r/{role}',
               ARRAY[CASE WHEN i % 2 = 0 THEN '=arw/{role}' ELSE '=r/{role}' END,
                     '{role}=arwd*/{role}']::aclitem[]
        FROM generate_series(1, 40) i;
        INSERT INTO ho.grants VALUES (0, NULL, '{{}}');
        ANALYZE;
        """,
    )
    same_server = ho.rows(target_dsn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)) == [(1,)]
    try:
        if not same_server:
            with pytest.raises(PlanningError, match=f"column one \\(aclitem\\) names role\\(s\\) {role}"):
                read_catalog(empty_source, ho.config("ho-acl"), target_dsn=target_dsn)
            refused = ho.full_copy(empty_source, target_dsn)
            assert refused and {f.returncode for f in refused} == {65}, [f.describe() for f in refused]
            message = refused[0].stderr
            assert f"source table ho.grants: column one (aclitem) names role(s) {role}" in message, message
            assert ho.rows(target_dsn, "SELECT to_regclass('ho.grants')") == [(None,)]
            ho.run_sql(target_dsn, f"CREATE ROLE {role}")
        read_catalog(empty_source, ho.config("ho-acl"), target_dsn=target_dsn)  # the plan passes now
        ho.copy_and_compare(empty_source, target_dsn, sequences="skip")
        texts = "SELECT id, one::text, many::text FROM ho.grants ORDER BY id"
        assert ho.rows(target_dsn, texts) == ho.rows(empty_source, texts)
    finally:
        ho.run_sql(target_dsn, f"DROP TABLE IF EXISTS ho.grants; DROP ROLE IF EXISTS {role}")
        ho.run_sql(empty_source, f"DROP TABLE ho.grants; DROP ROLE IF EXISTS {role}")


TEMPORAL_SQL = """
CREATE EXTENSION btree_gist;
CREATE SCHEMA ho;
CREATE TABLE ho.booking (room int, during tstzrange, who text, PRIMARY KEY (room, during WITHOUT OVERLAPS));
INSERT INTO ho.booking
SELECT i % 50, tstzrange(timestamptz '2024-01-01' + (i / 50) * interval '1 hour',
                         timestamptz '2024-01-01' + (i / 50 + 1) * interval '1 hour'), 'w' || i
FROM generate_series(1, 3000) i;
ANALYZE;
"""


def test_temporal_primary_key_copies_and_is_refused_for_streams(source_dsn: str, target_dsn: str) -> None:
    # PostgreSQL 18 `PRIMARY KEY (room, during WITHOUT OVERLAPS)` (15 has no temporal keys): the
    # full copy reproduces it (btree_gist on the target) and the rows exactly; a stream would fail
    # on every insert (its upserts cannot target an exclusion constraint), so CDC refuses it first.
    ho.run_sql(source_dsn, TEMPORAL_SQL)
    ho.run_sql(target_dsn, "CREATE EXTENSION btree_gist")
    ho.copy_and_compare(source_dsn, target_dsn, verify="checksum", sequences="skip")
    key = (
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'ho.booking'::regclass AND contype = 'p'"
    )
    assert (
        ho.rows(target_dsn, key)
        == ho.rows(source_dsn, key)
        == [("PRIMARY KEY (room, during WITHOUT OVERLAPS)",)]
    )

    config = ho.config("ho-temporal", mode="full+incremental")
    with pytest.raises(PlanningError, match=r"ho\.booking has a temporal primary key \(WITHOUT OVERLAPS"):
        check_streamable(source_dsn, config, ["ho.booking"])
    with pytest.raises(WorkerError, match="mode: full"):
        prepare_stream(source_dsn=source_dsn, config=config, tables=["ho.booking"])
    assert ho.rows(source_dsn, "SELECT pubname FROM pg_publication") == []


ODD_SHAPES_SQL = """
CREATE SCHEMA ho;
CREATE SCHEMA "other side";
CREATE TABLE ho.nocols ();
INSERT INTO ho.nocols SELECT FROM generate_series(1, 3);
CREATE TABLE ho.arrkey (k text[] PRIMARY KEY, n int);
INSERT INTO ho.arrkey SELECT ARRAY['a' || i, NULL, 'B'], i FROM generate_series(1, 900) i;
CREATE TYPE ho.pair AS (a int, b text);
CREATE TABLE ho.compkey (k ho.pair PRIMARY KEY, v int);
INSERT INTO ho.compkey SELECT ROW(i % 10, 'x' || i)::ho.pair, i FROM generate_series(1, 900) i;
CREATE TABLE ho.parted (id int NOT NULL, at date NOT NULL, v text, PRIMARY KEY (id, at))
  PARTITION BY RANGE (at);
CREATE TABLE "other side".parted_2024 PARTITION OF ho.parted FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE ho.parted_rest (v text, at date NOT NULL, id int NOT NULL, junk int);
ALTER TABLE ho.parted_rest DROP COLUMN junk;
ALTER TABLE ho.parted ATTACH PARTITION ho.parted_rest DEFAULT;
INSERT INTO ho.parted SELECT i, date '2023-06-01' + i % 500, 'v' || i FROM generate_series(1, 1200) i;
CREATE SEQUENCE "other side".shared_seq START 100;
CREATE TABLE ho.s1 (id int PRIMARY KEY DEFAULT nextval('"other side".shared_seq'), v int);
CREATE TABLE ho.s2 (id int PRIMARY KEY DEFAULT nextval('"other side".shared_seq'), v int);
INSERT INTO ho.s1 (v) SELECT i FROM generate_series(1, 50) i;
INSERT INTO ho.s2 (v) SELECT i FROM generate_series(1, 50) i;
CREATE TABLE ho.intervals (k interval PRIMARY KEY, f float8);
INSERT INTO ho.intervals SELECT i * interval '1 min 3 sec', i / 3.0 FROM generate_series(1, 900) i;
ANALYZE;
"""
ODD_STREAMED = ["ho.arrkey", "ho.compkey", "ho.parted", "ho.intervals", "ho.s1"]


def test_odd_shapes_copy_and_stream(empty_source: str, target_dsn: str, tmp_path: Path) -> None:
    # A table with no columns (three rows), array and composite-type keys (the latter copied as
    # one chunk: its order is not compared across servers), a partition in another schema and a
    # DEFAULT partition attached with another column order and a dropped column, a sequence in
    # another schema shared by two tables, an interval key: copied exactly (small chunks), the
    # keyed ones then streamed through key moves, cross-partition moves and inserts.
    ho.run_sql(empty_source, ODD_SHAPES_SQL)
    ho.copy_and_compare(empty_source, target_dsn, verify="checksum", chunk_rows=97)
    ho.run_sql(target_dsn, "DROP SCHEMA ho CASCADE; DROP SCHEMA zdtp CASCADE")
    stream = ho.Stream(empty_source, target_dsn, tmp_path, include=ODD_STREAMED)
    try:
        ho.run_sql(
            empty_source,
            """
            UPDATE ho.arrkey SET k = k || 'z'::text WHERE n % 7 = 0;
            DELETE FROM ho.arrkey WHERE n % 11 = 0;
            UPDATE ho.compkey SET k = ROW((k).a + 100, (k).b)::ho.pair WHERE v % 5 = 0;
            UPDATE ho.parted SET at = date '2024-03-03' WHERE id % 9 = 0;
            UPDATE ho.parted SET at = date '2020-01-01' WHERE id % 13 = 0;
            INSERT INTO ho.parted VALUES (5000, '2024-05-05', 'new');
            UPDATE ho.intervals SET k = k + interval '1 year' WHERE f > 200;
            INSERT INTO ho.s1 (v) VALUES (1), (2);
            """,
        )
        stream.wait_same(tables=ODD_STREAMED)
    finally:
        assert stream.stop() == 0


MORE_KEYS_SQL = """
CREATE EXTENSION IF NOT EXISTS citext;
CREATE SCHEMA ho;
CREATE TABLE ho.ck (k char(6) PRIMARY KEY, v int);
INSERT INTO ho.ck SELECT rpad(chr(65 + i % 26) || i, 1 + i % 6), i FROM generate_series(1, 800) i
ON CONFLICT DO NOTHING;
CREATE TABLE ho.nk (k name PRIMARY KEY, v int);
INSERT INTO ho.nk SELECT 'N' || i || ' x', i FROM generate_series(1, 800) i;
CREATE TABLE ho.cik (k citext PRIMARY KEY, v int);
INSERT INTO ho.cik SELECT (CASE WHEN i % 2 = 0 THEN 'Ab' ELSE 'cD' END) || i, i
FROM generate_series(1, 800) i;
CREATE TABLE ho.jk (k jsonb PRIMARY KEY, v int);
INSERT INTO ho.jk SELECT jsonb_build_object('a', i, 'b', ARRAY[i, NULL]), i FROM generate_series(1, 800) i;
CREATE TABLE ho.ik (k inet PRIMARY KEY, v int);
INSERT INTO ho.ik SELECT ('10.' || (i / 256) || '.' || (i % 256) || '.1/' || (8 + i % 25))::inet, i
FROM generate_series(1, 800) i ON CONFLICT DO NOTHING;
CREATE TABLE ho.mk (k money PRIMARY KEY, v int);
INSERT INTO ho.mk SELECT (i * 1234.567)::numeric::money, i FROM generate_series(-400, 400) i;
ANALYZE;
"""


def test_keys_of_more_types_chunk_and_stream(empty_source: str, target_dsn: str, tmp_path: Path) -> None:
    # Chunk bounds travel as text and come back as typed literals: char(n) (trailing blanks),
    # name, citext (case-insensitive order, an extension type), jsonb, inet with prefixes, money
    # (its text under lc_monetary = C on both full-copy sessions). Small chunks, checksums; then
    # key updates and deletes streamed.
    ho.run_sql(empty_source, MORE_KEYS_SQL)
    ho.run_sql(target_dsn, "CREATE EXTENSION IF NOT EXISTS citext")
    ho.copy_and_compare(empty_source, target_dsn, verify="checksum", chunk_rows=97, sequences="skip")
    ho.run_sql(target_dsn, "DROP SCHEMA ho CASCADE; DROP SCHEMA zdtp CASCADE")
    stream = ho.Stream(empty_source, target_dsn, tmp_path)
    try:
        ho.run_sql(
            empty_source,
            """
            UPDATE ho.ck SET k = rtrim(k) || 'z' WHERE v % 7 = 0;
            UPDATE ho.cik SET k = upper(k) WHERE v % 3 = 0;
            UPDATE ho.jk SET k = k || '{"c": 1}' WHERE v % 5 = 0;
            UPDATE ho.mk SET k = k + '0.01'::money WHERE v % 4 = 0;
            DELETE FROM ho.ik WHERE v % 6 = 0;
            UPDATE ho.nk SET v = -v;
            """,
        )
        stream.wait_same(sequences="skip")
    finally:
        assert stream.stop() == 0


def test_byte_order_collations_chunk_by_key(empty_source: str, target_dsn: str) -> None:
    # "C", "POSIX" and "ucs_basic" (libc C on PostgreSQL 15, builtin C on 18) and the databases'
    # C.UTF-8 default all order by bytes: shown equal on both sides, so these keys are chunked by
    # range as usual (no single_chunk), and the copy is exact.
    ho.run_sql(
        empty_source,
        "CREATE SCHEMA ho;"
        + "".join(
            f"""
            CREATE TABLE ho.{name} (k text COLLATE {coll} PRIMARY KEY, n int);
            INSERT INTO ho.{name} SELECT w || i, i FROM unnest({WORDS}) w, generate_series(1, 40) i;
            """
            for name, coll in (
                ("c_key", '"C"'),
                ("posix_key", '"POSIX"'),
                ("ucs_key", "ucs_basic"),
                ("dflt", '"default"'),
            )
        )
        + "ANALYZE;",
    )
    events = _copy_words(empty_source, target_dsn)
    assert not [e for e in events if e.get("event") == "single_chunk"], events
    for table in ("ho.c_key", "ho.posix_key", "ho.ucs_key", "ho.dflt"):
        assert _plan_events(events, table)[0]["chunks"] > 1, (table, events)
