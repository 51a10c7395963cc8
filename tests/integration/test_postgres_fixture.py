"""The Postgres fixture is a real server fit for CDC: logical WAL, slots, separate databases."""

import shutil
import socket
import tempfile
from pathlib import Path

import psycopg

from devtools.postgres import ensure_server, stop_server


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


def test_a_taken_port_moves_the_dev_server_instead_of_failing() -> None:
    """CI once found 55432 held by a server an earlier checkout left running: every test errored."""
    # Not pytest's tmp_path: as root the server runs as another user, who cannot enter it.
    data_dir = Path(tempfile.mkdtemp(prefix="zdtp-port-moved-"))
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        try:
            server = ensure_server(data_dir, port=taken)
            assert server.port != taken
            with psycopg.connect(server.dsn()) as conn:
                assert conn.execute("SHOW port").fetchone() == (str(server.port),)
            assert ensure_server(data_dir, port=taken).port == server.port  # reused, not moved again
        finally:
            stop_server(data_dir)
            shutil.rmtree(data_dir, ignore_errors=True)
