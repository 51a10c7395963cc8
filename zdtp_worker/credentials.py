"""Database credentials for the worker: from env (``ZDTP_SOURCE_DSN``) or a mounted Secret file
(``ZDTP_SOURCE_DSN_FILE``). The file form is preferred in pods: env values show up in
``kubectl describe`` of a careless setup, files never do.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from zdtp_worker.contract.envelope import dsn_env, dsn_file_env
from zdtp_worker.contract.errors import ConfigError

_PASSWORD_IN_URL = re.compile(r"(://[^:/@]+:)[^@]*@")
_PASSWORD_KV = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def load_dsn(role: str) -> str:
    """Return the DSN for ``role`` (``source`` or ``target``) or raise ConfigError naming the variable."""
    var, file_var = dsn_env(role), dsn_file_env(role)
    if path := os.environ.get(file_var):
        try:
            value = Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{file_var}: cannot read {path}: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"{file_var}: {path} is empty")
        return value
    if value := os.environ.get(var, "").strip():
        return value
    raise ConfigError(f"no {role} credentials: set {var} or {file_var}")


def redact(text: str) -> str:
    """Remove passwords from a DSN or an error message that may quote one."""
    return _PASSWORD_KV.sub(r"\1***", _PASSWORD_IN_URL.sub(r"\1***@", text))
