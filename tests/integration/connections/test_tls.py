"""TLS to PostgreSQL with ``sslmode=verify-full`` and a CA generated for the test.

The server accepts TLS connections only (pg_hba ``hostnossl ... reject``). The DSN is built from
a real Airflow connection (``AIRFLOW_CONN_*``, conn_type postgres, ``sslrootcert`` in extras) by
``zdtp_provider.connections``; the worker process copies a table over it. A CA that did not sign
the server's certificate fails verification; ``sslmode=disable`` as a per-task override is
refused by the server, so the copy that worked really ran over TLS.

On the real node (``test_tls_secret_reaches_the_worker_pod``): the CA travels as a Kubernetes
Secret mounted at ``TLS_DIR``, the credentials Secret's DSN points ``sslrootcert`` there, and the
worker pod copies over verify-full.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from devtools.postgres15 import Postgres15Server
from tests.integration.connections.tls_server import conn_env, make_ca
from tests.integration.worker_full.helpers import run_worker, spec_dict
from zdtp_provider.connections import resolve_dsns
from zdtp_provider.k8s.secret import SOURCE_KEY, TARGET_KEY

pytestmark = [pytest.mark.postgres]


def _count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM t").fetchone()[0]


def test_worker_copies_over_verify_full_with_the_connections_ca(
    tls_server: Postgres15Server, databases: tuple[str, str], ca_file: Path, monkeypatch
) -> None:
    source_db, target_db = databases
    for conn_id, db in (("tls_src", source_db), ("tls_tgt", target_db)):
        conn_env(monkeypatch, conn_id, tls_server, db, sslmode="verify-full", sslrootcert=str(ca_file))
    dsns = resolve_dsns(source_conn_id="tls_src", target_conn_id="tls_tgt")
    proc = run_worker(spec_dict(["t"], run_id="tls-1"), dsns[SOURCE_KEY], dsns[TARGET_KEY])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _count(dsns[TARGET_KEY]) == 1000


def test_a_ca_that_did_not_sign_the_server_fails_verification(
    tls_server: Postgres15Server, databases: tuple[str, str], tmp_path: Path, monkeypatch
) -> None:
    other = tmp_path / "other-ca.crt"
    other.write_bytes(make_ca("some other CA").cert_pem)
    source_db, target_db = databases
    for conn_id, db in (("tls_src", source_db), ("tls_tgt", target_db)):
        conn_env(monkeypatch, conn_id, tls_server, db, sslmode="verify-full", sslrootcert=str(other))
    dsns = resolve_dsns(source_conn_id="tls_src", target_conn_id="tls_tgt")
    proc = run_worker(spec_dict(["t"], run_id="tls-2"), dsns[SOURCE_KEY], dsns[TARGET_KEY])
    assert proc.returncode in (75, 78), proc.stderr[-2000:]
    assert "certificate" in proc.stderr.lower() or "ssl" in proc.stderr.lower(), proc.stderr[-2000:]
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(dsns[SOURCE_KEY]).close()


def test_per_task_sslmode_overrides_the_connection(
    tls_server: Postgres15Server, databases: tuple[str, str], ca_file: Path, monkeypatch
) -> None:
    source_db, _ = databases
    conn_env(monkeypatch, "tls_src", tls_server, source_db, sslmode="verify-full", sslrootcert=str(ca_file))
    plain = resolve_dsns(source_conn_id="tls_src", target_conn_id=None, sslmode="disable")[SOURCE_KEY]
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(plain).close()
    verified = resolve_dsns(source_conn_id="tls_src", target_conn_id=None)[SOURCE_KEY]
    with psycopg.connect(verified) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)
