"""Reach the real kubelet node of the dev cluster from Python: start it (``dev/node/up.sh``) or say
why it cannot run here, and find a container's process on the host.

The KWOK nodes (``devtools.cluster``) simulate pods; this node really runs them with containerd and
runc. It is tainted and labelled ``zdtp.io/real-node=true``: ``pod_placement()`` gives the
``nodeSelector`` and toleration a pod needs to land there.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UP = REPO / "dev" / "node" / "up.sh"
NODE_LABEL = "zdtp.io/real-node"
# Where containerd's runc shim keeps each task's init pid (dev/node/lib.sh's NODE_RUN).
NODE_RUN = Path(os.environ.get("ZDTP_NODE_RUN", "/run/zdtp-node"))
TASK_STATE = NODE_RUN / "containerd" / "io.containerd.runtime.v2.task" / "k8s.io"


def real_node_required() -> bool:
    """``ZDTP_REAL_NODE=required`` (CI, ``make test`` as root on Linux): no fallback, no skip.

    On a machine that runs the node, a skipped real-pod test or a simulated demo can only hide a
    regression, so callers turn :class:`RealNodeUnavailable` into a failure with its reason.
    """
    return os.environ.get("ZDTP_REAL_NODE", "") == "required"


class RealNodeUnavailable(RuntimeError):
    """This machine cannot run a real node (not root, no overlayfs, no cgroups, disabled...)."""


class RealNodeError(RuntimeError):
    """The machine should run a node but starting it failed: a bug to look at, not a skip."""


@dataclass(frozen=True)
class RealNode:
    name: str
    worker_image: str
    pause_image: str


def ensure_real_node(*, timeout: float = 900) -> RealNode:
    """Start (or reuse) the real node; the dev cluster must already run.

    ``ZDTP_REAL_NODE=0`` turns it off. Exit code 2 of ``up.sh`` means the machine cannot run a node.
    A cold first run builds kubelet and the images (a few minutes); a warm one takes seconds.
    """
    if os.environ.get("ZDTP_REAL_NODE", "1") == "0":
        raise RealNodeUnavailable("ZDTP_REAL_NODE=0")
    state = Path(os.environ.get("ZDTP_STATE", REPO / ".zdtp"))
    other = os.environ.get("ZDTP_KUBECONFIG")
    if other and Path(other).resolve() != (state / "kubeconfig").resolve():
        # The node's certificate is signed with the CA of the cluster dev/cluster/up.sh made.
        raise RealNodeUnavailable(f"ZDTP_KUBECONFIG={other} is not the dev cluster the node can join")
    proc = subprocess.run([str(UP)], capture_output=True, text=True, timeout=timeout)
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    reason = lines[-1] if lines else f"exit code {proc.returncode}"
    if proc.returncode == 2:
        raise RealNodeUnavailable(reason)
    if proc.returncode != 0:
        raise RealNodeError(reason)
    facts = state / "node"
    return RealNode(
        name=(facts / "node-name").read_text().strip(),
        worker_image=(facts / "worker-image").read_text().strip(),
        pause_image=(facts / "pause-image").read_text().strip(),
    )


def pod_placement() -> dict[str, object]:
    """Pod-spec fields that put a pod on the real node and nowhere else."""
    return {
        "nodeSelector": {NODE_LABEL: "true"},
        "tolerations": [{"key": NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
    }


def container_host_pid(container_id: str) -> int:
    """Host pid of a running container's main process, from ``containerd://<id>`` or ``<id>``."""
    cid = container_id.split("://", 1)[-1]
    return int((TASK_STATE / cid / "init.pid").read_text().strip())
