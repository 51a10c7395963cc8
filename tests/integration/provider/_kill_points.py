"""Hold an Airflow task at a chosen point of its Kubernetes traffic, so a test can kill it there.

Imported by a test DAG file (in the ``dag.test()`` subprocess) before the operators. It wraps the
Kubernetes client's REST layer — every API request of the operator goes through it — and, at the
point named by ``ZT_KILL_POINT``, writes the marker file ``ZT_MARK`` and sleeps, so the test
knows the task is there and sends SIGTERM:

* ``before_create`` — before the first write request is sent (nothing exists yet);
* ``after_secret`` — right after the first Secret write returned (credentials exist, workload not);
* ``after_workload`` — right after the Pod/Job/Deployment write returned.

The hold ends once Airflow's SIGTERM handler ran ``on_kill()`` (see ``_hold``).

Other points (``running``) need no hold: the test watches the cluster instead.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

WRITES = ("POST", "PUT", "PATCH")
WORKLOADS = ("pods", "jobs", "deployments")


def resource_of(url: str) -> str:
    """``secrets`` for ``.../namespaces/ns/secrets[/name]`` (the collection after the namespace)."""
    parts = url.split("?", 1)[0].rstrip("/").split("/")
    if "namespaces" in parts:
        i = parts.index("namespaces")
        if len(parts) > i + 2:
            return parts[i + 2]
    return ""


def _hold(mark: Path, what: str) -> None:
    """Wait here until SIGTERM, then go on as the task would.

    Airflow's SIGTERM handler only calls the operator's ``on_kill()``; the interrupted code then
    carries on (until the supervisor's SIGKILL), so an operator must notice it was killed before
    it creates anything more. The hold chains to that handler and ends when it has run.
    """
    released = threading.Event()
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame) -> None:
        if callable(previous):
            previous(signum, frame)
        released.set()

    signal.signal(signal.SIGTERM, on_term)
    mark.write_text(what)
    released.wait(600)


def install() -> None:
    point = os.environ.get("ZT_KILL_POINT", "")
    if point not in ("before_create", "after_secret", "after_workload"):
        return
    mark = Path(os.environ["ZT_MARK"])
    from kubernetes.client import rest

    real = rest.RESTClientObject.request

    def request(self, method, url, *args, **kwargs):
        write, resource = method in WRITES, resource_of(url)
        if point == "before_create" and write and not mark.exists():
            _hold(mark, f"before {method} {url}")
        response = real(self, method, url, *args, **kwargs)
        reached = (point == "after_secret" and resource == "secrets") or (
            point == "after_workload" and resource in WORKLOADS
        )
        if write and reached and not mark.exists():
            _hold(mark, f"after {method} {url}")
        return response

    rest.RESTClientObject.request = request
