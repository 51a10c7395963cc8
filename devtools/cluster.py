"""Reach the KWOK dev cluster from Python: find a healthy kubeconfig or start the cluster.

Order: ``ZDTP_KUBECONFIG`` (a cluster someone already runs), then ``.zdtp/kubeconfig`` if its
apiserver answers, else ``dev/cluster/up.sh`` (builds binaries on first use, cached by version).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_KUBECONFIG = REPO / ".zdtp" / "kubeconfig"


class ClusterSetupError(RuntimeError):
    pass


def _healthy(kubeconfig: Path) -> bool:
    if not kubeconfig.exists():
        return False
    from kubernetes import client, config

    try:
        with config.new_client_from_config(config_file=str(kubeconfig)) as api:
            client.VersionApi(api).get_code(_request_timeout=5)
    except Exception:
        return False
    return True


def ensure_cluster() -> Path:
    """Return the kubeconfig path of a healthy dev cluster, starting one if needed."""
    if env := os.environ.get("ZDTP_KUBECONFIG"):
        path = Path(env)
        if not _healthy(path):
            raise ClusterSetupError(f"ZDTP_KUBECONFIG={env}: the cluster does not answer /readyz")
        return path
    if _healthy(DEFAULT_KUBECONFIG):
        return DEFAULT_KUBECONFIG
    proc = subprocess.run([str(REPO / "dev" / "cluster" / "up.sh")], text=True, capture_output=True)
    if proc.returncode != 0:
        raise ClusterSetupError((proc.stderr or proc.stdout).strip().splitlines()[-1])
    return DEFAULT_KUBECONFIG
