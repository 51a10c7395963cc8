"""The Postgres fixture is a real server fit for CDC: logical WAL, slots, separate databases."""

import psycopg


def test_source_and_target_are_separate_databases(source_dsn: str, target_dsn: str) -> None:
    with psycopg.connect(source_dsn) as src, psycopg.connect(target_dsn) as tgt:
        src.execute("CREATE TABLE only_here (id int primary key)")
        assert (
            src.execute("SELECT current_database()").fetchone()
            != tgt.execute("SELECT current_database()").fetchone()
        )
        assert tgt.execute("SELECT to_regclass('public.only_here')").fetchone() == (None,)


def test_logical_replication_slot_can_be_created(source_dsn: str) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as conn:
        assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
        conn.execute("CREATE TABLE t (id int primary key, v text)")
        conn.execute("CREATE PUBLICATION p FOR TABLE t")
        slot = conn.execute(
            "SELECT slot_name FROM pg_create_logical_replication_slot('fixture_check', 'pgoutput')"
        ).fetchone()
        assert slot == ("fixture_check",)
        conn.execute("INSERT INTO t VALUES (1, 'x')")
        changes = conn.execute(
            "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('fixture_check', NULL, NULL,"
            " 'proto_version', '1', 'publication_names', 'p')"
        ).fetchone()
        assert changes is not None and changes[0] >= 3  # begin, relation/insert, commit
