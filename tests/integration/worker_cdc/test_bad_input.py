"""Bad input fails before anything is applied, with a clear message and the documented exit code."""

from __future__ import annotations

import shutil
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from devtools.ports import free_port
from devtools.postgres import ensure_server, stop_server
from tests.conftest import STATE_DIR
from tests.fixtures.postgres import PgServer
from tests.integration.worker_cdc.helpers import make_spec, run_worker_once
from zdtp_worker.contract.errors import ExitCode

pytestmark = pytest.mark.postgres


def assert_nothing_applied(target_dsn: str) -> None:
    with psycopg.connect(target_dsn) as tgt:
        assert tgt.execute("SELECT to_regnamespace('zdtp')").fetchone() == (None,)
        assert tgt.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)


def test_unknown_table_is_a_config_error(source_dsn: str, target_dsn: str) -> None:
    code, err = run_worker_once(make_spec(["public.nope"]), source_dsn, target_dsn)
    assert code == ExitCode.CONFIG_ERROR, err
    assert "source table public.nope does not exist" in err
    assert_nothing_applied(target_dsn)


def test_table_without_primary_key_is_a_data_error(source_dsn: str, target_dsn: str) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute("CREATE TABLE nopk (id int, v text)")
    code, err = run_worker_once(make_spec(["nopk"]), source_dsn, target_dsn)
    assert code == ExitCode.DATA_ERROR, err
    assert "source table public.nopk has no primary key" in err
    assert_nothing_applied(target_dsn)


def test_role_without_replication_is_a_config_error(
    pg_server: PgServer, source_dsn: str, target_dsn: str
) -> None:
    role = f"norepl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}' NOREPLICATION")
    try:
        with psycopg.connect(source_dsn, autocommit=True) as src:
            src.execute("CREATE TABLE t (id int PRIMARY KEY)")
        parts = urlsplit(source_dsn)
        dsn = urlunsplit(parts._replace(netloc=f"{role}:pw-{role}@{parts.hostname}:{parts.port}"))
        code, err = run_worker_once(make_spec(["t"]), dsn, target_dsn)
        assert code == ExitCode.CONFIG_ERROR, err
        assert f"source role '{role}' lacks the REPLICATION privilege" in err
        assert f"pw-{role}" not in err
        assert_nothing_applied(target_dsn)
    finally:
        with psycopg.connect(pg_server.dsn(), autocommit=True) as admin:
            admin.execute(f"DROP ROLE {role}")


@pytest.mark.slow
def test_wal_level_replica_is_a_config_error(target_dsn: str) -> None:
    """A throwaway second server with wal_level=replica (the shared one must stay logical)."""
    data_dir = STATE_DIR / f"pg-walcheck-{uuid.uuid4().hex[:6]}"
    try:
        server = ensure_server(data_dir, port=free_port())
        stop_server(data_dir)
        with (data_dir / "pgdata" / "postgresql.conf").open("a") as fh:
            fh.write("\nwal_level = replica\n")
        server = ensure_server(data_dir)
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            assert conn.execute("SHOW wal_level").fetchone() == ("replica",)
            conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        code, err = run_worker_once(make_spec(["t"]), server.dsn(), target_dsn)
        assert code == ExitCode.CONFIG_ERROR, err
        assert "source wal_level is 'replica'" in err
        assert_nothing_applied(target_dsn)
    finally:
        stop_server(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
