"""A PostgreSQL that speaks TLS only, with a CA and server certificate generated for the test.

The server (Debian's PostgreSQL 15 via devtools.postgres15, its own data dir and port) rejects
every non-TLS connection in pg_hba.conf, so a client that gets in has used TLS; its certificate
names 127.0.0.1 (IP SAN) and localhost, so ``sslmode=verify-full`` can succeed against it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devtools.postgres15 import Postgres15Server, bin_dir, start_server


@dataclass(frozen=True)
class Authority:
    cert_pem: bytes
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return builder.not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))


def make_ca(common_name: str = "zdtp test CA") -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _validity(x509.CertificateBuilder())
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return Authority(cert.public_bytes(serialization.Encoding.PEM), key, cert)


def make_server_cert(ca: Authority) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for 127.0.0.1 / localhost, signed by ``ca``."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _validity(x509.CertificateBuilder())
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


HBA = """\
local all all trust
hostnossl all all 0.0.0.0/0 reject
hostssl all all 127.0.0.1/32 scram-sha-256
hostssl replication all 127.0.0.1/32 scram-sha-256
"""


def _pg_ctl(server: Postgres15Server, *args: str) -> None:
    proc = subprocess.run(
        [str(bin_dir() / "pg_ctl"), "-D", str(server.pgdata), *args],
        user=server.run_as,
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    if proc.returncode != 0:
        log = server.data_dir / "server.log"
        tail = log.read_text().strip().splitlines()[-3:] if log.exists() else []
        raise RuntimeError(f"pg_ctl {args[-1]}: {' | '.join(tail) or proc.stderr.strip()}")


def start_tls_server(ca: Authority) -> Postgres15Server:
    """A fresh PostgreSQL 15 (Debian's build has TLS; the embedded wheel's has not), restarted
    with ``ssl = on``, the server certificate from ``ca`` and TLS-only pg_hba. ``stop()`` it."""
    server = start_server()
    try:
        _pg_ctl(server, "-m", "fast", "-w", "stop")
        cert, key = make_server_cert(ca)
        owner = server.pgdata.stat()
        for name, content in (("server.crt", cert), ("server.key", key), ("pg_hba.conf", HBA.encode())):
            path = server.pgdata / name
            path.write_bytes(content)
            path.chmod(0o600)  # the server refuses a key others can read
            os.chown(path, owner.st_uid, owner.st_gid)
        with (server.pgdata / "postgresql.conf").open("a") as fh:
            fh.write(
                "\n# TLS only (test)\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
            )
        _pg_ctl(server, "-l", str(server.data_dir / "server.log"), "-w", "-t", "60", "start")
    except BaseException:
        server.stop()
        raise
    return server


def conn_env(monkeypatch: Any, conn_id: str, server: Postgres15Server, db: str, **extra: str) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": server.host,
                "port": server.port,
                "login": "postgres",
                "password": server.password,
                "schema": db,
                "extra": extra,
            }
        ),
    )
