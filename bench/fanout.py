"""Fan-out benchmark: N full-sync workers to all-complete, Indexed Job vs mapped Airflow tasks.

Both styles run through zdtp's real operators under real Airflow (``dag.test()`` in a subprocess,
SQLite metadata DB) against the KWOK dev cluster (``.zdtp/kubeconfig``, started by
``dev/cluster/up.sh``):

* ``indexed-job``: one ``IndexedFullSyncJobOperator`` task, ``completions = parallelism = N``;
* ``tasks``: ``FullSyncOperator.partial(...).expand(spec=[N specs])``: one task, one Pod and one
  credentials Secret per worker.

KWOK pods run no code: every pod carries ``sim.zdtp.io/delay`` (default 1s) and "exits 0" after it.
What is measured is orchestration cost — API objects, scheduling, Airflow task overhead — which
is exactly what differs between the two styles.

``dag.test()`` runs task instances **one at a time** in one process, so the mapped figure is a
sequential one; a real scheduler overlaps tasks up to its parallelism but pays a task-process
start (DAG parse, imports) per task instead. Mapped tasks are measured at ``--mapped`` (default
100) and extrapolated linearly to N, as the output says.

``get_logs=False`` on FullSyncOperator: KWOK's log endpoint never closes a ``follow=true`` stream
(its CRI stub reports the runtime "Unavailable", which the kubelet log reader treats as
"container still running"), and KPO then waits for its 300 s read timeout per pod.

    .venv/bin/python bench/fanout.py [--workers 1000] [--mapped 100] [--delay 1s]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devtools.airflow_home import airflow_env, migrate  # noqa: E402
from devtools.cluster import ensure_cluster  # noqa: E402

DAG_HEADER = """
import json, os
import pendulum
from airflow.sdk import DAG
from kubernetes.client import V1ResourceRequirements

N = int(os.environ["FANOUT_N"])
SPECS = [
    {{"mode": "full", "task": "fanout", "worker": f"w{{i}}", "tables": [{{"source": f"public.t{{i}}"}}]}}
    for i in range(N)
]
COMMON = dict(
    task_id="copy",
    image="zdtp/worker:0.1.0",
    namespace=os.environ["FANOUT_NS"],
    source_conn_id="fanout_src",
    target_conn_id="fanout_tgt",
    annotations={{"sim.zdtp.io/delay": os.environ["FANOUT_DELAY"]}},
    worker_resources=V1ResourceRequirements(requests={{"cpu": "10m", "memory": "16Mi"}},
                                            limits={{"memory": "64Mi"}}),
)
with DAG(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
"""

INDEXED_BODY = """
    from zdtp_provider.operators.job import IndexedFullSyncJobOperator

    IndexedFullSyncJobOperator(specs=SPECS, parallelism=N, delete_on_success=False, **COMMON)
"""

MAPPED_BODY = """
    from zdtp_provider.operators.full import FullSyncOperator

    FullSyncOperator.partial(get_logs=False, **COMMON).expand(spec=SPECS)
"""

RUNNER = textwrap.dedent(
    """
    import collections, importlib.util, json, sys, time
    path, dag_id = sys.argv[1], sys.argv[2]
    spec = importlib.util.spec_from_file_location(dag_id, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    t0 = time.monotonic()
    dr = module.dag.test()
    seconds = time.monotonic() - t0
    from airflow.utils.session import create_session
    with create_session() as s:
        states = collections.Counter(str(ti.state) for ti in dr.get_task_instances(session=s))
    print("FANOUT-RESULT " + json.dumps({"seconds": seconds, "run": str(dr.state), "tis": states}))
    """
)


def _namespace(kubeconfig: Path) -> tuple[str, object]:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    name = f"fanout-{uuid.uuid4().hex[:8]}"
    labels = {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "warn", "audit")}
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )
    return name, api


def _job_seconds(api, namespace: str) -> float | None:
    """startTime → completionTime of the (kept) Indexed Job, as Kubernetes recorded it."""
    from kubernetes import client

    batch = client.BatchV1Api(api)
    jobs = batch.list_namespaced_job(namespace).items
    if not jobs:
        return None
    job = jobs[0]
    seconds = None
    if job.status.start_time and job.status.completion_time:
        seconds = (job.status.completion_time - job.status.start_time).total_seconds()
    for j in jobs:
        batch.delete_namespaced_job(j.metadata.name, namespace, propagation_policy="Background")
    return seconds


def _run(dag_file: Path, dag_id: str, env: dict[str, str], timeout: float) -> dict:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(dag_file), dag_id],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    wall = time.monotonic() - started
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("FANOUT-RESULT "):
            return {**json.loads(line.removeprefix("FANOUT-RESULT ")), "process_seconds": wall}
    tail = (proc.stdout + proc.stderr)[-3000:]
    raise RuntimeError(f"{dag_id}: dag.test gave no result (rc={proc.returncode}):\n{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=1000, help="workers of the Indexed Job")
    parser.add_argument("--mapped", type=int, default=100, help="mapped tasks actually run")
    parser.add_argument("--delay", default="1s", help="simulated run time of each KWOK pod")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()

    kubeconfig = ensure_cluster()
    namespace, api = _namespace(kubeconfig)
    root = Path(tempfile.mkdtemp(prefix="zdtp-fanout-"))
    try:
        dags = root / "dags"
        dags.mkdir()
        env = {**os.environ, **airflow_env(root / "home", kubeconfig=kubeconfig)}
        (root / "home").mkdir()
        conn = {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "bench"}
        env.update(
            {
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                "AIRFLOW_CONN_FANOUT_SRC": json.dumps({**conn, "schema": "src"}),
                "AIRFLOW_CONN_FANOUT_TGT": json.dumps({**conn, "schema": "tgt"}),
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
                "FANOUT_NS": namespace,
                "FANOUT_DELAY": args.delay,
                "PYTHONPATH": str(REPO),
            }
        )
        migrate(env)
        results = {}
        for style, body, n in (
            ("indexed-job", INDEXED_BODY, args.workers),
            ("tasks", MAPPED_BODY, args.mapped),
        ):
            dag_id = f"fanout_{style.replace('-', '_')}"
            path = dags / f"{dag_id}.py"
            path.write_text(DAG_HEADER.format(dag_id=dag_id) + body)
            print(f"{style}: {n} workers ...", flush=True)
            result = _run(path, dag_id, {**env, "FANOUT_N": str(n)}, args.timeout)
            result["n"] = n
            if style == "indexed-job":
                result["job_seconds"] = _job_seconds(api, namespace)
            results[style] = result
            print(f"  {json.dumps(result)}", flush=True)
        _report(results, args)
        failed = [s for s, r in results.items() if r["run"] != "success"]
        return 1 if failed else 0
    finally:
        from kubernetes import client

        client.CoreV1Api(api).delete_namespace(namespace, propagation_policy="Background")
        shutil.rmtree(root, ignore_errors=True)


def _report(results: dict, args: argparse.Namespace) -> None:
    idx, mapped = results["indexed-job"], results["tasks"]
    per_task = mapped["seconds"] / mapped["n"]
    mapped_at_n = per_task * idx["n"]
    ratio = mapped_at_n / idx["seconds"]
    measured = "measured" if mapped["n"] == idx["n"] else f"extrapolated from {mapped['n']}"
    print()
    py = platform.python_version()
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {py}, pod delay {args.delay}")
    print(
        f"indexed-job  {idx['n']:>5} workers: {idx['seconds']:7.1f} s in dag.test "
        f"(Job start→complete {idx.get('job_seconds') or float('nan'):.1f} s), run {idx['run']}, "
        f"task states {idx['tis']}"
    )
    print(
        f"tasks        {mapped['n']:>5} workers: {mapped['seconds']:7.1f} s in dag.test "
        f"({per_task:.2f} s per mapped task, sequential), run {mapped['run']}, task states {mapped['tis']}"
    )
    print(f"tasks        {idx['n']:>5} workers: {mapped_at_n:7.1f} s ({measured})")
    print(f"ratio tasks/indexed-job at {idx['n']}: {ratio:.1f}x")
    goal = idx["seconds"] <= 60 and ratio >= 10
    print(f"goal (indexed-job <= 60 s and >= 10x faster): {'met' if goal else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
