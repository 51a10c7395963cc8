"""Airflow connection → libpq connection string: quoting, IPv6, every libpq extra, TLS paths.

The structural checks parse the result with libpq's own parser (``conninfo_to_dict``); the last
test connects to the test PostgreSQL with extras (``options``, ``application_name``,
``connect_timeout``) and reads them back from the server session.
"""

from __future__ import annotations

from types import SimpleNamespace

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.fixtures.postgres import PgServer
from zdtp_provider.connections import dsn_from_connection, libpq_keywords
from zdtp_provider.k8s.secret import TLS_DIR


def _conn(**fields) -> SimpleNamespace:
    base = {
        "conn_type": "postgres",
        "host": "db.example",
        "port": 5432,
        "login": "sync",
        "password": "pw",
        "schema": "app",
        "extra_dejson": {},
    }
    return SimpleNamespace(**{**base, **fields})


def parsed(conn, **kwargs) -> dict:
    return conninfo_to_dict(dsn_from_connection(conn, **kwargs))


@pytest.mark.parametrize("host", ["::1", "[::1]", "fe80::1%eth0"])
def test_ipv6_hosts_reach_libpq_unbracketed(host: str) -> None:
    assert parsed(_conn(host=host))["host"] == host.strip("[]")


def test_quoting_survives_spaces_quotes_and_backslashes() -> None:
    nasty = "p w'd\\x=y"
    assert parsed(_conn(password=nasty, schema="my db"))["password"] == nasty
    assert parsed(_conn(password=nasty, schema="my db"))["dbname"] == "my db"


def test_every_libpq_extra_is_kept_and_airflow_extras_are_dropped() -> None:
    extras = {
        "sslmode": "verify-full",
        "sslrootcert": "/certs/ca.crt",
        "sslcert": "/certs/client.crt",
        "sslkey": "/certs/client.key",
        "options": "-c search_path=sales,public",
        "connect_timeout": 7,
        "application_name": "nightly",
        "target_session_attrs": "read-write",
        "keepalives": True,
        "cursor": "dictcursor",  # Airflow's postgres hook option, not libpq's
        "iam": False,
    }
    out = parsed(_conn(extra_dejson=extras))
    for key in ("sslmode", "sslrootcert", "sslcert", "sslkey", "options", "application_name"):
        assert out[key] == extras[key]
    assert (out["connect_timeout"], out["keepalives"], out["target_session_attrs"]) == (
        "7",
        "1",
        "read-write",
    )
    assert "cursor" not in out and "iam" not in out
    assert {"sslrootcert", "options", "connect_timeout"} <= libpq_keywords()


def test_tls_dir_repoints_certificate_files_by_name_and_sslmode_overrides() -> None:
    extras = {"sslmode": "prefer", "sslrootcert": "/opt/airflow/certs/pg-ca.crt", "sslkey": "/k/client.key"}
    out = parsed(_conn(extra_dejson=extras), sslmode="verify-full", tls_dir=TLS_DIR)
    assert out["sslmode"] == "verify-full"
    assert out["sslrootcert"] == f"{TLS_DIR}/pg-ca.crt"
    assert out["sslkey"] == f"{TLS_DIR}/client.key"
    with pytest.raises(ValueError, match="sslmode 'verify_full' is not one of"):
        dsn_from_connection(_conn(), sslmode="verify_full")


@pytest.mark.parametrize("conn_type", ["http", "mysql", "", None])
def test_non_postgres_types_are_refused_naming_the_type(conn_type) -> None:
    with pytest.raises(ValueError, match="zdtp needs a 'postgres' connection"):
        dsn_from_connection(_conn(conn_type=conn_type))


@pytest.mark.postgres
def test_extras_reach_the_server_session(pg_server: PgServer) -> None:
    conn = _conn(
        host=pg_server.host,
        port=pg_server.port,
        login="postgres",
        password=pg_server.password,
        schema="postgres",
        extra_dejson={"options": "-c search_path=zdtp_x,public", "application_name": "zdtp-dsn-test"},
    )
    with psycopg.connect(dsn_from_connection(conn)) as session:
        row = session.execute("SELECT current_setting('search_path'), current_setting('application_name')")
        assert row.fetchone() == ("zdtp_x,public", "zdtp-dsn-test")
