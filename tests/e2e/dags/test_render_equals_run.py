"""``zdtp render`` prints what a DAG run applies: compared with the objects the run created.

Each generated DAG (every mode and fan-out) runs under ``airflow dags test`` against the KWOK dev
cluster and a real source database, while a watch records every Pod, Job, Deployment, Secret and
ConfigMap zdtp creates in the namespace, exactly as created (the ADDED event). Then the real
``zdtp render FILE --run-id <that run>`` command runs with the same connections, and its
documents must be the same objects: the same kinds and names, and every field it prints equal to
the stored object's (the server adds defaults and status; Secret values are printed redacted).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from tests.e2e.conftest import SyncEnv, metadata_rows
from tests.e2e.dags.test_dag_modes import config, seed
from tests.fixtures.cluster import Cluster

# One DAG run per test: one Airflow process serves the whole module (each test its own env).
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.airflow,
    pytest.mark.postgres,
    pytest.mark.usefixtures("one_airflow_per_module"),
]

KINDS = {
    "Pod": "list_namespaced_pod",
    "Secret": "list_namespaced_secret",
    "ConfigMap": "list_namespaced_config_map",
    "Job": "list_namespaced_job",
    "Deployment": "list_namespaced_deployment",
}


class Recorder:
    """Every zdtp-made object of the namespace as first created (controller-made pods excluded)."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.objects: dict[tuple[str, str], dict] = {}
        self._stop = threading.Event()
        self._threads = []
        for kind, method in KINDS.items():
            api = cluster.batch if kind == "Job" else cluster.apps if kind == "Deployment" else cluster.core
            thread = threading.Thread(
                target=self._watch, args=(cluster, kind, getattr(api, method), namespace), daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _watch(self, cluster: Cluster, kind: str, list_fn, namespace: str) -> None:
        # Continue each short watch from the last resourceVersion: an object created and deleted
        # between two watches (a succeeded pod) is still seen.
        version = list_fn(namespace).metadata.resource_version
        w = watch.Watch()
        while not self._stop.is_set():
            try:
                for event in w.stream(list_fn, namespace, resource_version=version, timeout_seconds=2):
                    self._record(cluster, kind, event["object"])
                version = w.resource_version or version
            except ApiException as exc:
                if exc.status != 410:
                    raise
                # Expired: re-list (the list shows what exists now) and watch on from there.
                listed = list_fn(namespace)
                for obj in listed.items:
                    self._record(cluster, kind, obj)
                version = listed.metadata.resource_version

    def _record(self, cluster: Cluster, kind: str, model: Any) -> None:
        obj = cluster.api.sanitize_for_serialization(model)
        meta = obj["metadata"]
        if meta.get("ownerReferences") and kind == "Pod":
            return  # a Job's or ReplicaSet's pod: made by a controller, not by zdtp
        self.objects.setdefault((kind, meta["name"]), obj)

    def stop(self) -> dict[tuple[str, str], dict]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        return self.objects


def contained(rendered: Any, live: Any, path: str = "") -> list[str]:
    """Where ``rendered`` is not part of ``live`` (dicts: every rendered key equal; lists: same
    length, item by item)."""
    if isinstance(rendered, dict):
        if not isinstance(live, dict):
            return [f"{path}: {live!r} is not a mapping"]
        out = []
        for key, value in rendered.items():
            if key not in live:
                out.append(f"{path}.{key}: missing from the applied object")
            else:
                out += contained(value, live[key], f"{path}.{key}")
        return out
    if isinstance(rendered, list):
        if not isinstance(live, list) or len(live) != len(rendered):
            return [f"{path}: {rendered!r} != {live!r}"]
        return [
            d
            for i, (r, v) in enumerate(zip(rendered, live, strict=True))
            for d in contained(r, v, f"{path}[{i}]")
        ]
    return [] if rendered == live else [f"{path}: rendered {rendered!r}, applied {live!r}"]


def _run_id(home: Path, dag_id: str) -> str:
    rows = metadata_rows(
        home, "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
    )
    return rows[0][0]


def _render(sync_env: SyncEnv, name: str, run_id: str) -> list[dict]:
    exe = Path(sys.executable).with_name("zdtp")
    proc = subprocess.run(
        [str(exe), "render", str(sync_env.syncs / f"{name}.yaml"), "--run-id", run_id],
        env=sync_env.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "values from the task's Airflow connections" in proc.stdout.splitlines()[0]
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.mark.parametrize(
    "overrides",
    [
        {"mode": "full", "fanout": "tasks"},
        {"mode": "full", "fanout": "indexed-job"},
        {"mode": "incremental", "tables": ["public.orders"], "include": []},
        {"mode": "full+incremental", "workers": 2},
    ],
    ids=["full-tasks", "full-indexed", "incremental", "full+incremental"],
)
def test_render_prints_the_objects_the_run_applied(
    sync_env: SyncEnv, source_dsn: str, cluster: Cluster, namespace: str, overrides: dict
) -> None:
    seed(source_dsn)
    name = f"zt-render-{overrides['mode'].replace('+', '-')}"
    dag_id = sync_env.write(config(name, namespace, **overrides))
    recorder = Recorder(cluster, namespace)
    try:
        run = sync_env.dags_test(dag_id)
    finally:
        applied = recorder.stop()
    assert run.state == "success", run.output[-3000:]
    docs = _render(sync_env, name, _run_id(sync_env.home, dag_id))

    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == sorted(applied)
    for doc in docs:
        live = applied[(doc["kind"], doc["metadata"]["name"])]
        if doc["kind"] == "Secret":
            assert set(doc["stringData"]) == set(live["data"])
            doc = {k: v for k, v in doc.items() if k != "stringData"}
        problems = contained(doc, live)
        assert not problems, f"{doc['kind']} {doc['metadata']['name']}: " + "; ".join(problems[:10])
