"""Fixtures for connection tests: a TLS-only PostgreSQL 15 with a generated CA (module scope),
source/target databases on it with a 1000-row table, and Airflow connections from env."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devtools.postgres15 import Postgres15Server
from tests.integration.connections.tls_server import Authority, make_ca, start_tls_server


@pytest.fixture(scope="module")
def ca() -> Authority:
    return make_ca()


@pytest.fixture(scope="module")
def tls_server(ca: Authority) -> Iterator[Postgres15Server]:
    server = start_tls_server(ca)
    yield server
    server.stop()


@pytest.fixture
def ca_file(tmp_path: Path, ca: Authority) -> Path:
    path = tmp_path / "airflow-certs" / "pg-ca.crt"
    path.parent.mkdir()
    path.write_bytes(ca.cert_pem)
    return path


@pytest.fixture
def databases(tls_server: Postgres15Server, ca_file: Path) -> Iterator[tuple[str, str]]:
    names = (f"tls_src_{uuid.uuid4().hex[:8]}", f"tls_tgt_{uuid.uuid4().hex[:8]}")
    admin = tls_server.dsn() + f"?sslmode=verify-full&sslrootcert={ca_file}"
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    src = tls_server.dsn(names[0]) + f"?sslmode=verify-full&sslrootcert={ca_file}"
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g")
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)
    yield names
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
