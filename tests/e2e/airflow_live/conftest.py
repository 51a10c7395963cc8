"""A real Airflow 3.3 (scheduler, api-server, dag-processor, triggerer) for the live tests.

Started once per session (it takes 20-60 s on two busy cores) around a temporary DAGs folder:
``zdtp_syncs.py`` (a copy of the repo's) reading sync YAMLs from a temp ``ZDTP_SYNCS_DIR``, and
downstream DAGs scheduled on a sync's target-table Asset. Connections come from
``AIRFLOW_CONN_*`` env JSON and point at fresh source/target databases on the dev Postgres and at
the dev cluster. All four services stop (process groups, SIGTERM then SIGKILL) at teardown.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml

from devtools.airflow_home import REPO
from devtools.airflow_services import AirflowServices, start_airflow
from tests.fixtures.cluster import create_namespace

SOURCE_CONN = "zdtp_live_src"
TARGET_CONN = "zdtp_live_tgt"
TABLE = "public.items"
ARTIFACTS = REPO / "test-artifacts" / "airflow_live"
ROWS = 1000

# KWOK pods run no code: this annotation makes each simulated worker container "run" 1 s and
# exit 0. The copy therefore "succeeds" without moving a row, hence ``verify: none``.
SIM_POD = {"annotations": {"sim.zdtp.io/delay": "1s"}}


@dataclass(frozen=True)
class LiveSyncs:
    """Sync tasks deployed into the live Airflow (DAG ids) and what they point at."""

    full_indexed: str  # mode full, indexed-job fan-out, explicit table → static Asset outlet
    tasks_fanout: str  # mode full, one mapped task per worker (used with dry_run)
    cron: str  # scheduled "0 2 * * *", never unpaused
    downstream: str  # scheduled on the target-table Asset of ``full_indexed``
    asset_uri: str
    namespace: str


def _sync_file(name: str, namespace: str, **overrides) -> dict:
    return {
        "name": name,
        "description": f"live-Airflow test sync {name}",
        "source_conn_id": SOURCE_CONN,
        "target_conn_id": TARGET_CONN,
        "tables": [TABLE],
        "mode": "full",
        "workers": 2,
        "fanout": "indexed-job",
        "verify": "none",
        "namespace": namespace,
        "pod": SIM_POD,
        "tags": ["live-test"],
        **overrides,
    }


DOWNSTREAM_DAG = '''
"""Consumer of the zdtp sync's target table: runs whenever that Asset gets an event."""
import datetime as dt

from airflow.sdk import DAG, Asset, task

with DAG(
    dag_id="zdtp_live_downstream",
    schedule=[Asset.ref(uri={uri!r})],
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    tags=["live-test"],
):

    @task
    def fresh_data(**context):
        events = context["triggering_asset_events"]
        print("triggered by", {{str(k): len(v) for k, v in events.items()}})

    fresh_data()
'''


def _pg_conn_json(dsn: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": info.get("host", "127.0.0.1"),
            "port": int(info.get("port", 5432)),
            "login": info.get("user"),
            "password": info.get("password"),
            "schema": info.get("dbname"),
        }
    )


@pytest.fixture(scope="session")
def live_databases(pg_server) -> Iterator[tuple[str, str]]:
    """Source with ``public.items`` (1,000 rows) and an empty target; dropped afterwards."""
    src, tgt = pg_server.create_database("livesrc"), pg_server.create_database("livetgt")
    with psycopg.connect(pg_server.dsn(src), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.items (id bigint PRIMARY KEY, v text NOT NULL)")
        conn.execute(f"INSERT INTO public.items SELECT g, 'v' || g FROM generate_series(1, {ROWS}) g")
        conn.execute("ANALYZE public.items")
    yield pg_server.dsn(src), pg_server.dsn(tgt)
    pg_server.drop_database(src)
    pg_server.drop_database(tgt)


@pytest.fixture(scope="session")
def live_namespace(cluster) -> Iterator[str]:
    name = create_namespace(cluster)
    yield name
    cluster.core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="session")
def live_syncs(live_namespace: str) -> LiveSyncs:
    schema, table = TABLE.split(".")
    return LiveSyncs(
        full_indexed="zdtp_live_full",
        tasks_fanout="zdtp_live_tasks",
        cron="zdtp_live_cron",
        downstream="zdtp_live_downstream",
        asset_uri=f"zdtp://{TARGET_CONN}/{schema}/{table}",
        namespace=live_namespace,
    )


@pytest.fixture(scope="session")
def live_airflow(cluster, live_databases, live_syncs: LiveSyncs) -> Iterator[AirflowServices]:
    root = Path(tempfile.mkdtemp(prefix="zdtp-live-airflow-"))
    dags, syncs = root / "dags", root / "syncs"
    dags.mkdir()
    syncs.mkdir()
    shutil.copy(REPO / "dags" / "zdtp_syncs.py", dags / "zdtp_syncs.py")
    (dags / "downstream.py").write_text(textwrap.dedent(DOWNSTREAM_DAG.format(uri=live_syncs.asset_uri)))
    ns = live_syncs.namespace
    files = {
        "live-full": _sync_file("live-full", ns),
        "live-tasks": _sync_file("live-tasks", ns, fanout="tasks"),
        "live-cron": _sync_file("live-cron", ns, schedule="0 2 * * *"),
    }
    for name, body in files.items():
        (syncs / f"{name}.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    source_dsn, target_dsn = live_databases
    services = start_airflow(
        root / "home",
        dags_folder=dags,
        kubeconfig=cluster.kubeconfig,
        extra_env={
            "ZDTP_SYNCS_DIR": str(syncs),
            f"AIRFLOW_CONN_{SOURCE_CONN.upper()}": _pg_conn_json(source_dsn),
            f"AIRFLOW_CONN_{TARGET_CONN.upper()}": _pg_conn_json(target_dsn),
        },
    )
    try:
        yield services
    finally:
        services.stop()
        # Keep the service and task logs for a look after the run (test-artifacts/ is ignored).
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(ARTIFACTS / "airflow-logs", ignore_errors=True)
        shutil.copytree(root / "home" / "logs", ARTIFACTS / "airflow-logs", dirs_exist_ok=True)
        shutil.rmtree(root, ignore_errors=True)
