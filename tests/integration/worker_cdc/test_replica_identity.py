"""Which tables CDC can stream, decided from the source catalog before anything runs."""

from __future__ import annotations

import psycopg
import pytest

from zdtp_worker.contract.errors import DataError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.control import replica_identity

pytestmark = pytest.mark.postgres

SCHEMA = """
CREATE TABLE pk (id int PRIMARY KEY, v text);
CREATE TABLE uq (a int NOT NULL, b text NOT NULL, v text, UNIQUE (a, b));
CREATE TABLE uq_nullable (a int UNIQUE, v text);
CREATE TABLE nokey (a int, v text);
CREATE TABLE full_pk (id int PRIMARY KEY, v text);
ALTER TABLE full_pk REPLICA IDENTITY FULL;
CREATE TABLE full_nokey (a int, v text);
ALTER TABLE full_nokey REPLICA IDENTITY FULL;
CREATE TABLE by_index (a int NOT NULL, v text);
CREATE UNIQUE INDEX by_index_a ON by_index (a);
ALTER TABLE by_index REPLICA IDENTITY USING INDEX by_index_a;
CREATE TABLE nothing (id int PRIMARY KEY);
ALTER TABLE nothing REPLICA IDENTITY NOTHING;
CREATE TABLE "Odd ""Name"" T" ("Key Col" int PRIMARY KEY);
CREATE TABLE parted (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu');
CREATE TABLE parted_other PARTITION OF parted DEFAULT;
CREATE TABLE parted_bad (id int, region text) PARTITION BY LIST (region);
CREATE TABLE parted_bad_us PARTITION OF parted_bad FOR VALUES IN ('us');
"""


def names(*tables: str) -> list[TableName]:
    # model_construct: quoted-name support in TableName's validator is another change's job;
    # this module must work with any name PostgreSQL allows.
    return [TableName.model_construct(schema_="public", name=t) for t in tables]


def test_keys_and_refusals(source_dsn: str) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        checks = replica_identity.inspect(
            conn,
            names(
                "pk",
                "uq",
                "uq_nullable",
                "nokey",
                "full_pk",
                "full_nokey",
                "by_index",
                "nothing",
                'Odd "Name" T',
                "parted",
                "parted_bad",
            ),
        )
    by = {t.name: c for t, c in checks.items()}
    assert by["pk"].ok and by["pk"].key == ("id",)
    assert by["full_pk"].ok and by["full_pk"].key == ("id",)
    assert by["by_index"].ok and by["by_index"].key == ("a",)
    assert by['Odd "Name" T'].ok and by['Odd "Name" T'].key == ("Key Col",)
    assert by["parted"].ok and by["parted"].key == ("id", "region")
    # Unique index on NOT NULL columns: refused, but with the exact fix and an opt-in.
    assert not by["uq"].ok and by["uq"].fix_index == "uq_a_b_key"
    assert 'REPLICA IDENTITY USING INDEX "uq_a_b_key"' in (by["uq"].problem or "")
    assert "incremental.set_replica_identity" in (by["uq"].problem or "")
    # A nullable unique column is no key.
    assert not by["uq_nullable"].ok and by["uq_nullable"].fix_index is None
    assert "no primary key and no unique index on NOT NULL columns" in (by["nokey"].problem or "")
    assert "UPDATE/DELETE on it fail" in (by["nokey"].problem or "")
    assert by["full_nokey"].ok and by["full_nokey"].key == ()  # streamed by whole-row match
    assert "REPLICA IDENTITY NOTHING" in (by["nothing"].problem or "")
    assert (by["parted_bad"].problem or "").startswith("source table public.parted_bad has no primary key")

    message = replica_identity.refusal(checks)
    assert message is not None and message.startswith("CDC cannot stream 5 table(s): ")
    for table in ("public.uq ", "public.nokey ", "public.nothing "):
        assert table in message
    # Opting in accepts the tables zdtp can fix with an existing index, no others.
    opted = replica_identity.refusal(checks, set_replica_identity=True)
    assert opted is not None and "public.uq " not in opted and "public.nokey " in opted


def test_leaf_partition_without_identity_is_named(source_dsn: str) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE p (id int NOT NULL, region text NOT NULL) PARTITION BY LIST (region);"
            " CREATE UNIQUE INDEX p_key ON p (id, region);"
            " ALTER TABLE p REPLICA IDENTITY FULL;"
            " CREATE TABLE p_eu PARTITION OF p FOR VALUES IN ('eu');"
        )
        checks = replica_identity.inspect(conn, names("p"))
    problem = checks[TableName(schema="public", name="p")].problem or ""
    assert problem.startswith(
        "partition public.p_eu of public.p: source table public.p_eu has no primary key"
    )


def test_check_raises_and_fix_only_when_asked(source_dsn: str) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        with pytest.raises(DataError, match=r"public\.uq has no primary key"):
            replica_identity.check(conn, names("pk", "uq"))
        # Nothing was altered by the check.
        assert conn.execute("SELECT relreplident FROM pg_class WHERE relname = 'uq'").fetchone() == ("d",)
        replica_identity.check(conn, names("pk", "uq"), set_replica_identity=True)
        done = replica_identity.apply_fixes(conn, replica_identity.inspect(conn, names("pk", "uq", "nokey")))
        assert done == ['ALTER TABLE "public"."uq" REPLICA IDENTITY USING INDEX "uq_a_b_key"']
        assert conn.execute("SELECT relreplident FROM pg_class WHERE relname = 'uq'").fetchone() == ("i",)
        assert replica_identity.inspect(conn, names("uq"))[TableName(schema="public", name="uq")].ok


def test_config_opt_in_lets_plan_pass_and_prepare_set_the_identity(source_dsn: str) -> None:
    from zdtp_provider.config import parse_config
    from zdtp_provider.database_steps import prepare_stream
    from zdtp_provider.planner import PlanningError, check_streamable

    with psycopg.connect(source_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
    base = {
        "name": "ri-opt",
        "source_conn_id": "s",
        "target_conn_id": "t",
        "tables": ["public.uq"],
        "mode": "incremental",
    }
    with pytest.raises(PlanningError, match=r"public\.uq has no primary key"):
        check_streamable(source_dsn, parse_config(base, origin="test"), ["public.uq"])
    config = parse_config({**base, "set_replica_identity": True}, origin="test")
    check_streamable(source_dsn, config, ["public.uq"])
    prepare_stream(source_dsn=source_dsn, config=config, tables=["public.uq"])
    with psycopg.connect(source_dsn) as conn:
        assert conn.execute("SELECT relreplident FROM pg_class WHERE relname = 'uq'").fetchone() == ("i",)
        conn.execute("SELECT pg_drop_replication_slot('zdtp_ri_opt')")
