"""Headless Chromium for UI tests: Debian's ``chromium`` package, driven by Playwright.

Playwright normally downloads its own browser build; this machine (and CI) can only reach package
registries, so tests point Playwright at the distribution's browser instead
(``executable_path=...``). :func:`ensure_chromium` installs it idempotently with apt when it is
missing and we are root; anything else is reported as a reason the caller can skip with.

``python -m devtools.browser`` does the same from a Makefile or a shell and prints the path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

CANDIDATES = ("chromium", "chromium-browser")
APT_PACKAGE = "chromium"


class BrowserUnavailable(RuntimeError):
    """No usable Chromium and it could not be installed; ``str()`` says why."""


def find_chromium() -> str | None:
    if env := os.environ.get("ZDTP_CHROMIUM"):
        return env if os.access(env, os.X_OK) else None
    for name in CANDIDATES:
        if path := shutil.which(name):
            return path
    return None


def ensure_chromium(*, install: bool = True, timeout: float = 600) -> str:
    """Path of a Chromium binary, installing Debian's package with apt-get if needed."""
    if path := find_chromium():
        return path
    if not install:
        raise BrowserUnavailable("chromium is not installed (apt-get install -y chromium)")
    if shutil.which("apt-get") is None:
        raise BrowserUnavailable("chromium is not installed and this system has no apt-get")
    if os.geteuid() != 0:
        raise BrowserUnavailable("chromium is not installed; installing it needs root (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", APT_PACKAGE]):
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BrowserUnavailable(f"{' '.join(cmd)} took longer than {timeout:.0f}s") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise BrowserUnavailable(f"{' '.join(cmd)} failed: {tail[0]}")
    if path := find_chromium():
        return path
    raise BrowserUnavailable(f"apt-get installed {APT_PACKAGE} but no chromium binary is on PATH")


def main() -> int:
    try:
        print(ensure_chromium())
    except BrowserUnavailable as exc:
        print(f"zdtp: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
