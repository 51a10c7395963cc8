"""A second PostgreSQL major version for tests: Debian's packaged PostgreSQL 15.

Real users run older servers than the embedded wheel's 18, and logical replication differs between
majors (generated columns, partition publishing, slot invalidation reasons). This module runs
Debian's ``postgresql-15`` binaries (``apt-get install postgresql-15``; ``make test`` installs
them) in a throw-away data directory: ``initdb`` with password auth, ``wal_level=logical``, TCP on
127.0.0.1 on a free port. PostgreSQL refuses to run as root, so as root the server runs as
Debian's ``postgres`` system user (created by the package).

Missing binaries are a :class:`~devtools.postgres.PostgresSetupError`: the tests that need this
server fail with the install hint; they never skip.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devtools.ports import free_port
from devtools.postgres import SETTINGS, SUPERUSER, PostgresSetupError

BIN_DIR = Path("/usr/lib/postgresql/15/bin")
INSTALL_HINT = "install Debian's postgresql-15 (apt-get install postgresql-15, or dev/system-packages.sh)"
# Two servers share this machine with everything else: keep the second one small.
_SETTINGS = {**SETTINGS, "shared_buffers": "64MB", "max_connections": "200"}


@dataclass(frozen=True)
class Postgres15Server:
    """A running PostgreSQL 15 in ``data_dir``; ``stop()`` shuts it down and removes the directory."""

    data_dir: Path
    port: int
    password: str
    run_as: str | None
    host: str = "127.0.0.1"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@{self.host}:{self.port}/{dbname}"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def stop(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            _pg(self.run_as, "pg_ctl", "-D", str(self.pgdata), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def bin_dir() -> Path:
    """Debian's PostgreSQL 15 binaries, or PostgresSetupError saying how to install them."""
    for name in ("postgres", "initdb", "pg_ctl"):
        if not os.access(BIN_DIR / name, os.X_OK):
            raise PostgresSetupError(f"{BIN_DIR / name} is missing: {INSTALL_HINT}")
    return BIN_DIR


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresSetupError(
            f"running as root and there is no 'postgres' system user: {INSTALL_HINT}"
        ) from None
    return "postgres"


def _pg(user: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir() / args[0]), *args[1:]],
        user=user,
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
        cwd="/",  # the server user may not be able to read the caller's working directory
    )


def start_server(*, parent: Path | None = None) -> Postgres15Server:
    """initdb a fresh cluster in a new temporary directory and start it on a free port."""
    bin_dir()
    user = _run_as()
    data_dir = Path(tempfile.mkdtemp(prefix="zdtp-pg15-", dir=parent))
    data_dir.chmod(0o755)
    pgdata = data_dir / "pgdata"
    password = secrets.token_urlsafe(18)
    pwfile = data_dir / ".initdb-pw"
    pwfile.write_text(password)
    pgdata.mkdir()
    if user is not None:
        for path in (data_dir, pgdata, pwfile):
            shutil.chown(path, user, user)
    pgdata.chmod(0o700)
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
            "--locale=C.UTF-8",
            "--no-sync",
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise PostgresSetupError(f"PostgreSQL 15 initdb failed: {exc.stderr.strip()[-300:]}") from exc
    finally:
        pwfile.unlink(missing_ok=True)
    port = free_port()
    conf = "".join(f"{k} = {v}\n" for k, v in _SETTINGS.items())
    with (pgdata / "postgresql.conf").open("a") as fh:
        fh.write(
            f"\n# zdtp test server (PostgreSQL 15)\nport = {port}\nunix_socket_directories = '{data_dir}'\n"
        )
        fh.write(conf)
    with (pgdata / "pg_hba.conf").open("a") as fh:
        fh.write("host replication all 127.0.0.1/32 scram-sha-256\n")
    server = Postgres15Server(data_dir=data_dir, port=port, password=password, run_as=user)
    log = data_dir / "server.log"
    if user is not None:
        log.touch()
        shutil.chown(log, user, user)
    started = _pg(user, "pg_ctl", "-D", str(pgdata), "-l", str(log), "-w", "-t", "60", "start", check=False)
    if started.returncode != 0:
        tail = log.read_text().strip().splitlines()[-3:] if log.exists() else []
        server.stop()
        raise PostgresSetupError(f"PostgreSQL 15 did not start: {' | '.join(tail) or started.stderr.strip()}")
    return server


def main() -> int:  # pragma: no cover - manual check: python -m devtools.postgres15
    server = start_server()
    try:
        out = subprocess.run(
            [str(bin_dir() / "psql"), server.dsn(), "-Atc", "SELECT version(), current_setting('wal_level')"],
            capture_output=True,
            text=True,
            check=True,
        )
        print(out.stdout.strip())
    finally:
        server.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
