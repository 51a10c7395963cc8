"""The Airflow fixture gives a migrated home and Airflow discovers the zdtp provider."""

import os
import subprocess
import sys
from pathlib import Path


def airflow(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("airflow")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, env=dict(os.environ), timeout=300
    )


def test_zdtp_provider_is_registered(airflow_home: Path) -> None:
    proc = airflow("providers", "get", "zdtp", "-o", "json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"zdtp"' in proc.stdout
    listing = airflow("providers", "list", "-o", "plain")
    assert any(line.split()[:1] == ["zdtp"] for line in listing.stdout.splitlines()), listing.stdout[-2000:]
