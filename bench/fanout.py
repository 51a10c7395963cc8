"""Fan-out benchmark: N full-sync workers to all-complete under a real Airflow scheduler.

One real Airflow 3 (scheduler, dag-processor, triggerer, api-server from
``devtools.airflow_services``; LocalExecutor; metadata DB in its own database on the dev
PostgreSQL server) runs, against the KWOK dev cluster (``.zdtp/kubeconfig``), one DAG per style:

* ``tasks``: ``FullSyncOperator.partial(...).expand(spec=[N specs])``, deferrable as generated DAGs
  run it: N task instances, each one Pod plus one credentials Secret, each waiting in the triggerer;
* ``indexed-job``: one deferrable ``IndexedFullSyncJobOperator`` task, ``completions = parallelism = N``;
* ``tasks-kpo-defer``: ``tasks`` with KPO's own deferral (zdtp before 2026-12-02), the control for
  Airflow's stale-executor-event race: a pod that ended before its task deferred makes the trigger
  fire at once, and the scheduler can fail the task ("state mismatch", apache/airflow#66374).
  Each run reports ``race``: audit-log ``state mismatch`` events, task tries that deferred, and
  tries zdtp finished in-process because the pod had already ended.

Each run triggers one DAG run through the REST API and measures trigger → DAG run ``success``
(polled every second; Airflow's own queued → end time is reported too). A watch on the style's
namespace counts the Pods and Secrets created during the run, and a listing after it those left.
Peak memory of each service's process tree (PSS and RSS sums; the scheduler's tree includes the
LocalExecutor workers and their task processes) is sampled every 2 s during each run. The
Indexed Job is kept after success (``delete_on_success=False``) to read its start → completion
time from Kubernetes, so its pods show up as "left"; zdtp's default deletes it.

Airflow runs with its defaults for concurrency — ``parallelism`` 32, ``max_active_tasks`` 16 per
DAG, the 128-slot default pool (deferred tasks hold no slot) — which the output states. Changed:
the heartbeats and the DAG-file re-list interval are shortened (``devtools.airflow_services``), as
in the live tests, and ``dagbag_import_timeout`` is 600 s instead of 30 s: on two cores, 32 task
processes importing the provider at once each need more than 30 s to parse the DAG file, and
Airflow reschedules every such task — the mapped run never converges. ``--timeout`` ends a run
that is still going and reports how many tasks finished by then (a measured lower bound).

KWOK pods run no code: every pod carries ``sim.zdtp.io/delay`` (default 1s) and "exits 0" after it.
What is measured is orchestration cost — API objects, scheduling, Airflow task overhead — which
is exactly what differs between the two styles.

``get_logs=False`` on FullSyncOperator: KWOK's log endpoint never closes a ``follow=true`` stream
(its CRI stub reports the runtime "Unavailable", which the kubelet log reader treats as
"container still running"), and KPO then waits for its 300 s read timeout per pod.

    .venv/bin/python bench/fanout.py [--workers 1000] [--styles tasks,indexed-job] [--runs 1]
        [--delay 1s] [--out results.json] [--chart docs/assets/fanout-times.png]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devtools.airflow_services import AirflowServices, start_airflow  # noqa: E402
from devtools.cluster import ensure_cluster  # noqa: E402
from devtools.postgres import ensure_server  # noqa: E402

STYLES = ("tasks", "indexed-job", "tasks-kpo-defer")
PARALLELISM = 32  # Airflow's default [core] parallelism, set explicitly: the dev helper uses 4
IMPORT_TIMEOUT = 600  # [core] dagbag_import_timeout, default 30 s: see main()

DAG_FILE = """
import os
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
    namespace=os.environ["FANOUT_NS_{suffix}"],
    source_conn_id="fanout_src",
    target_conn_id="fanout_tgt",
    deferrable=True,
    annotations={{"sim.zdtp.io/delay": os.environ["FANOUT_DELAY"]}},
    worker_resources=V1ResourceRequirements(requests={{"cpu": "10m", "memory": "16Mi"}},
                                            limits={{"memory": "64Mi"}}),
)
with DAG(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1)):
{body}
"""

BODIES = {
    "indexed-job": """
    from zdtp_provider.operators.job import IndexedFullSyncJobOperator

    IndexedFullSyncJobOperator(specs=SPECS, parallelism=N, delete_on_success=False, **COMMON)
""",
    "tasks": """
    from zdtp_provider.operators.full import FullSyncOperator

    FullSyncOperator.partial(get_logs=False, **COMMON).expand(spec=SPECS)
""",
    # Control for the stale-executor-event race: KPO's own deferral, as zdtp did before it
    # started reading the pod right before deferring (its skip check never sees a finished pod).
    "tasks-kpo-defer": """
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from zdtp_provider.operators.full import FullSyncOperator

    class KpoDeferral(FullSyncOperator):
        invoke_defer_method = KubernetesPodOperator.invoke_defer_method

    KpoDeferral.partial(get_logs=False, **COMMON).expand(spec=SPECS)
""",
}

# Task-log lines that say how each mapped task waited (counted over the run's task logs).
DEFERRED_LINE = "Pausing task as DEFERRED"
NOT_DEFERRED_LINE = "before the task deferred: finishing in-process instead of deferring"


def dag_id(style: str) -> str:
    return f"fanout_{style.replace('-', '_')}"


def _suffix(style: str) -> str:
    return style.replace("-", "_").upper()


# ------------------------------------------------------------------------------- Kubernetes


def _create_namespace(core, prefix: str) -> str:
    from kubernetes import client

    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    labels = {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "warn", "audit")}
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    return name


class CreatedCounter:
    """Counts Pods and Secrets ADDED in one namespace while it runs (a watch per kind)."""

    def __init__(self, api, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.created: dict[str, set[str]] = {"pods": set(), "secrets": set()}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._watch, args=(k,), daemon=True) for k in self.created]

    def _watch(self, kind: str) -> None:
        from kubernetes import client, watch

        core = client.CoreV1Api(self.api)
        lister = core.list_namespaced_pod if kind == "pods" else core.list_namespaced_secret
        rv = lister(self.namespace).metadata.resource_version
        while not self._stop.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(lister, self.namespace, resource_version=rv, timeout_seconds=5):
                    rv = event["object"].metadata.resource_version
                    if event["type"] == "ADDED":
                        self.created[kind].add(event["object"].metadata.name)
                    if self._stop.is_set():
                        break
            except Exception:  # a 410 Gone or a dropped stream: re-list from now; rare at this size
                rv = lister(self.namespace).metadata.resource_version
            finally:
                w.stop()

    def __enter__(self) -> CreatedCounter:
        for t in self._threads:
            t.start()
        time.sleep(0.5)  # let both watches start before anything is created
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(1)  # late events of the run's last objects
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)


def _left(api, namespace: str) -> dict[str, int]:
    from kubernetes import client

    core = client.CoreV1Api(api)
    pods = core.list_namespaced_pod(namespace).items
    secrets = [
        s
        for s in core.list_namespaced_secret(namespace).items
        if s.type != "kubernetes.io/service-account-token"
    ]
    return {"pods": len(pods), "secrets": len(secrets)}


def _job_seconds_and_cleanup(api, namespace: str) -> float | None:
    """startTime → completionTime of the (kept) Indexed Job, then delete it and everything left."""
    from kubernetes import client

    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    seconds = None
    for job in batch.list_namespaced_job(namespace).items:
        if job.status.start_time and job.status.completion_time:
            seconds = (job.status.completion_time - job.status.start_time).total_seconds()
        batch.delete_namespaced_job(job.metadata.name, namespace, propagation_policy="Background")
    core.delete_collection_namespaced_pod(namespace)
    core.delete_collection_namespaced_secret(namespace)
    return seconds


# ------------------------------------------------------------------------------- memory


def _pss(pid: int) -> int:
    """Proportional set size (bytes) from /proc/PID/smaps_rollup: shared pages split between
    their users, so a sum over forked processes is not inflated the way an RSS sum is."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class MemorySampler:
    """Peak memory per Airflow service, summed over its process tree, every ``every`` s.

    Both RSS (what ``ps`` shows; a sum counts pages shared by forked processes once per process,
    so it overstates a tree of LocalExecutor workers) and PSS (shared pages divided among their
    users: sums to the memory really used). One pass over /proc per sample, not one per service:
    on two busy cores the sampler itself must stay cheap.
    """

    def __init__(self, services: AirflowServices, every: float = 2.0) -> None:
        self.services, self.every = services, every
        self.peak: dict[str, dict[str, int]] = {name: {} for name in services.procs}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        children: dict[int, list[int]] = {}
        rss: dict[int, int] = {}
        for p in psutil.process_iter(["ppid", "memory_info"]):
            if p.info["memory_info"] is None:
                continue
            children.setdefault(p.info["ppid"], []).append(p.pid)
            rss[p.pid] = p.info["memory_info"].rss
        for name, popen in self.services.procs.items():
            tree, todo = [], [popen.pid]
            while todo:
                pid = todo.pop()
                if pid in rss:
                    tree.append(pid)
                todo.extend(children.get(pid, ()))
            now = {
                "tree_rss": sum(rss[p] for p in tree),
                "tree_pss": sum(_pss(p) for p in tree),
                "main_rss": rss.get(popen.pid, 0),
                "processes": len(tree),
            }
            peak = self.peak.setdefault(name, {})
            for key, value in now.items():
                peak[key] = max(peak.get(key, 0), value)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def summary(self) -> dict[str, dict[str, float]]:
        mib = 1024 * 1024
        return {
            name: {
                "tree_pss_mib": round(peak.get("tree_pss", 0) / mib, 1),
                "tree_rss_mib": round(peak.get("tree_rss", 0) / mib, 1),
                "main_rss_mib": round(peak.get("main_rss", 0) / mib, 1),
                "max_processes": peak.get("processes", 0),
            }
            for name, peak in self.peak.items()
        }


# ------------------------------------------------------------------------------- one run


def _task_states(services: AirflowServices, dag: str, run_id: str) -> dict[str, int]:
    states: dict[str, int] = {}
    offset = 0
    while True:
        page = services.api_json(
            "GET", f"/dags/{dag}/dagRuns/{run_id}/taskInstances", params={"limit": 100, "offset": offset}
        )
        for ti in page["task_instances"]:
            states[str(ti["state"])] = states.get(str(ti["state"]), 0) + 1
        offset += len(page["task_instances"])
        if not page["task_instances"] or offset >= page["total_entries"]:
            return states


def _race_counts(services: AirflowServices, dag: str, run_id: str) -> dict[str, int]:
    """Evidence of Airflow's stale-executor-event race (apache/airflow#66374) in one run.

    ``state_mismatch``: the scheduler's audit-log events failing a task on an executor event
    that disagrees with the task's state; ``deferred`` / ``finished_in_process``: task tries whose
    log shows a deferral, or zdtp finishing a pod that ended before the deferral.
    """
    events = services.api_json(
        "GET", "/eventLogs", params={"dag_id": dag, "run_id": run_id, "event": "state mismatch", "limit": 1}
    )
    counts = {"state_mismatch": int(events["total_entries"]), "deferred": 0, "finished_in_process": 0}
    for path in (services.home / "logs").glob(f"dag_id={dag}/run_id={run_id}/**/*.log"):
        text = path.read_text(errors="replace")
        counts["deferred"] += DEFERRED_LINE in text
        counts["finished_in_process"] += NOT_DEFERRED_LINE in text
    return counts


def _seconds_between(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    return (dt.datetime.fromisoformat(b) - dt.datetime.fromisoformat(a)).total_seconds()


def run_style(services: AirflowServices, api, style: str, namespace: str, n: int, timeout: float) -> dict:
    dag = dag_id(style)
    with CreatedCounter(api, namespace) as counter, MemorySampler(services) as memory:
        t0 = time.monotonic()
        created = services.trigger(dag)
        run_id = created["dag_run_id"]
        deadline = t0 + timeout
        progress: list[tuple[float, dict[str, int]]] = []  # task states once a minute
        next_progress = t0 + 60
        states_at_timeout: dict[str, int] | None = None
        while True:
            services.check_alive()
            run = services.api_json("GET", f"/dags/{dag}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                seconds = time.monotonic() - t0
                break
            if time.monotonic() > deadline:
                # Stop here and report how far it got: a measured lower bound, not a guess.
                seconds = time.monotonic() - t0
                states_at_timeout = _task_states(services, dag, run_id)  # before failing the run
                services.api_json("PATCH", f"/dags/{dag}/dagRuns/{run_id}", json={"state": "failed"})
                run["state"] = f"timeout ({run['state']})"
                break
            if n > 1 and style.startswith("tasks") and time.monotonic() >= next_progress:
                progress.append((round(time.monotonic() - t0), _task_states(services, dag, run_id)))
                print(f"    {progress[-1]}", flush=True)
                next_progress += 60
            time.sleep(1.0)
    result = {
        "style": style,
        "n": n,
        "seconds": round(seconds, 1),
        "airflow_seconds": _seconds_between(run.get("queued_at"), run.get("end_date")),
        "state": run["state"],
        "task_states": states_at_timeout or _task_states(services, dag, run_id),
        "race": _race_counts(services, dag, run_id),
        "created": {k: len(v) for k, v in counter.created.items()},
        "left": _left(api, namespace),
        "memory": memory.summary(),
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "progress": progress,
    }
    result["job_seconds"] = _job_seconds_and_cleanup(api, namespace)
    return result


# ------------------------------------------------------------------------------- main


def _pg_conn_json(server, dbname: str) -> str:
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": server.port,
            "login": "bench",
            "schema": dbname,
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workers", type=int, default=1000, help="workers per style (mapped tasks / Job indexes)"
    )
    parser.add_argument("--styles", default=",".join(STYLES), help="comma list of: " + ", ".join(STYLES))
    parser.add_argument("--runs", type=int, default=1, help="runs per style, interleaved")
    parser.add_argument("--delay", default="1s", help="simulated run time of each KWOK pod")
    parser.add_argument("--timeout", type=float, default=3600, help="per run, seconds")
    parser.add_argument("--out", type=Path, help="write all runs as JSON here")
    parser.add_argument(
        "--keep-home", action="store_true", help="keep the Airflow home (task logs) and print where it is"
    )
    parser.add_argument("--chart", type=Path, help="draw a PNG of the runs here (needs the bench extra)")
    args = parser.parse_args()
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    if bad := [s for s in styles if s not in STYLES]:
        parser.error(f"--styles: unknown style {bad[0]!r}; choose from {', '.join(STYLES)}")

    from kubernetes import client, config

    kubeconfig = ensure_cluster()
    api = config.new_client_from_config(config_file=str(kubeconfig))
    core = client.CoreV1Api(api)
    server = ensure_server(REPO / ".zdtp" / "pg")
    meta_db = f"fanout_airflow_{uuid.uuid4().hex[:8]}"
    import psycopg

    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{meta_db}"')
    namespaces = {style: _create_namespace(core, f"fanout-{style}") for style in styles}
    root = Path(tempfile.mkdtemp(prefix="zdtp-fanout-"))
    services = None
    started = dt.datetime.now(dt.UTC)
    runs: list[dict] = []
    try:
        dags = root / "dags"
        dags.mkdir()
        for style in styles:
            text = DAG_FILE.format(dag_id=dag_id(style), suffix=_suffix(style), body=BODIES[style].rstrip())
            (dags / f"{dag_id(style)}.py").write_text(text)
        extra_env = {
            "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
            # The one non-default: with 32 task processes importing the provider at once on two
            # cores, parsing the DAG file in a task takes over the default 30 s, and Airflow then
            # reschedules the task, again and again (seen at N=50).
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": str(IMPORT_TIMEOUT),
            "AIRFLOW_CONN_FANOUT_SRC": _pg_conn_json(server, "src"),
            "AIRFLOW_CONN_FANOUT_TGT": _pg_conn_json(server, "tgt"),
            "FANOUT_N": str(args.workers),
            "FANOUT_DELAY": args.delay,
            "PYTHONPATH": str(REPO),
            **{f"FANOUT_NS_{_suffix(s)}": ns for s, ns in namespaces.items()},
        }
        sql = server.dsn(meta_db).replace("postgresql://", "postgresql+psycopg2://", 1)
        print(f"starting Airflow (metadata DB {meta_db} on 127.0.0.1:{server.port}) ...", flush=True)
        services = start_airflow(
            root / "home", dags_folder=dags, kubeconfig=kubeconfig, sql_alchemy_conn=sql, extra_env=extra_env
        )
        for style in styles:
            services.wait_for_dag(dag_id(style), timeout=300)
            services.unpause(dag_id(style))
        settings = _airflow_settings(services)
        print(f"airflow: {settings}", flush=True)
        for i in range(args.runs):
            for style in styles:
                print(f"run {i + 1}/{args.runs} {style}: {args.workers} workers ...", flush=True)
                load = [round(x, 2) for x in os.getloadavg()]
                result = run_style(services, api, style, namespaces[style], args.workers, args.timeout)
                result.update({"run": i + 1, "load_before": load})
                runs.append(result)
                print(f"  {json.dumps(result)}", flush=True)
    finally:
        if services is not None:
            services.stop()
        for ns in namespaces.values():
            core.delete_namespace(ns, propagation_policy="Background")
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{meta_db}" WITH (FORCE)')
        if args.keep_home:
            print(f"Airflow home kept: {root / 'home'}", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
    report = {
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "started": started.isoformat(timespec="seconds"),
        "workers": args.workers,
        "delay": args.delay,
        "airflow": settings,
        "runs": runs,
    }
    _print_report(report)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    if args.chart:
        from fanout_chart import draw  # bench/ is sys.path[0] when run as a script

        draw([report], args.chart)
    return 0 if all(r["state"] == "success" for r in runs) else 1


def _airflow_settings(services: AirflowServices) -> dict:
    import importlib.metadata as md
    import subprocess

    airflow = str(Path(sys.executable).with_name("airflow"))
    env = {**os.environ, **services.env}
    out = {}
    for section, key in (
        ("core", "executor"),
        ("core", "parallelism"),
        ("core", "max_active_tasks_per_dag"),
        ("core", "default_pool_task_slot_count"),
        ("core", "dagbag_import_timeout"),
        ("triggerer", "capacity"),
    ):
        proc = subprocess.run(
            [airflow, "config", "get-value", section, key], env=env, capture_output=True, text=True
        )
        out[key] = proc.stdout.strip() or proc.stderr.strip()[-80:]
    out["metadata_db"] = "PostgreSQL (dev server, own database)"
    out["versions"] = {
        p: md.version(p) for p in ("apache-airflow", "apache-airflow-providers-cncf-kubernetes")
    }
    return out


def _print_report(report: dict) -> None:
    print()
    print(f"machine: {report['machine']}; started {report['started']}; pod delay {report['delay']}")
    print(f"airflow: {report['airflow']}")
    by_style: dict[str, list[dict]] = {}
    for r in report["runs"]:
        by_style.setdefault(r["style"], []).append(r)
        mem = ", ".join(
            f"{k} {v.get('tree_pss_mib', '?')} MiB PSS / {v.get('tree_rss_mib', v.get('tree_mib'))} MiB RSS"
            for k, v in r["memory"].items()
        )
        print(
            f"{r['style']:<12} run {r['run']}: {r['seconds']:7.1f} s trigger→success ({r['state']}; Airflow "
            f"queued→end {r['airflow_seconds']} s; Job {r['job_seconds']} s), tasks {r['task_states']}, "
            f"race {r.get('race')}, "
            f"created {r['created']}, left {r['left']}, load {r['load_before']}→{r['load_after']}; "
            f"peak memory (process trees) {mem}"
        )
    medians = {s: statistics.median(r["seconds"] for r in rs) for s, rs in by_style.items()}
    for style, m in medians.items():
        print(
            f"median {style:<12} {report['workers']:>5} workers: {m:7.1f} s "
            f"over {len(by_style[style])} run(s)"
        )
    if "tasks" in medians and "indexed-job" in medians:
        ratio = medians["tasks"] / medians["indexed-job"]
        print(f"ratio tasks / indexed-job (medians, measured at {report['workers']}): {ratio:.1f}x")
        goal = medians["indexed-job"] <= 60 and ratio >= 10
        print(f"goal (indexed-job <= 60 s and >= 10x faster): {'met' if goal else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
