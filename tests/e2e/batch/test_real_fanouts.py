"""Every copy fan-out end to end on the real node: a sync-task YAML, its generated DAG run by
``airflow dags test``, real worker pods copying a three-table source (``events`` big enough for
24 chunks), and the target equal to the source by checksum.

For the queue fan-outs one worker container is also killed with SIGKILL in the middle of a chunk
(from the host, as an OOM kill or crash would); the run still succeeds, and the audit in the
target proves every chunk was copied and committed exactly once: the target tables exist
beforehand without keys and with a statement trigger recording each committed COPY, so
``count(audit) == chunks == items done`` (a killed pod's COPY rolls back with its audit row).
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from devtools.real_node import RealNode, container_host_pid
from tests.e2e.conftest import SyncEnv
from tests.e2e.real_node.test_airflow_on_real_node import _config
from tests.fixtures.cluster import Cluster
from tests.fixtures.redis import redis_server, redis_url  # noqa: F401  (fixtures)
from tests.integration.queue.test_kill9 import AUDIT
from tests.integration.worker_full.helpers import duplicates, execute, fingerprint, scalar
from zdtp_worker.control.queue import check_queue

# One DAG run per test: one Airflow process serves the whole module (each test its own
# env), so its start-up (imports, execution API) is paid once, not per test.
pytestmark = [
    pytest.mark.realnode,
    pytest.mark.cluster,
    pytest.mark.airflow,
    pytest.mark.postgres,
    pytest.mark.usefixtures("one_airflow_per_module"),
]

CHUNK_ROWS = 2500
LEASE_SECONDS = 5.0
SOURCE = {
    "events": ("id bigint NOT NULL, kind text, at timestamptz", "SELECT g, 'k' || (g % 7), "
               "timestamptz '2026-01-01' + g * interval '1 min' FROM generate_series(1, 60000) g"),
    "accounts": ("id bigint NOT NULL, owner text, balance numeric(12,2)",
                 "SELECT g, 'owner ' || g, g * 0.01 FROM generate_series(1, 5000) g"),
    "tags": ("id uuid NOT NULL, n int", "SELECT md5(g::text)::uuid, g FROM generate_series(1, 3000) g"),
}  # fmt: skip


def _seed(source_dsn: str, target_dsn: str) -> None:
    execute(target_dsn, AUDIT)
    for name, (cols, rows) in SOURCE.items():
        execute(source_dsn, f"CREATE TABLE {name} ({cols}, PRIMARY KEY (id))")
        execute(source_dsn, f"INSERT INTO {name} {rows}")
        execute(source_dsn, f"ANALYZE {name}")
        # Keyless on purpose (a double copy shows as duplicates), audited per committed COPY.
        execute(target_dsn, f"CREATE TABLE {name} ({cols})")
        execute(target_dsn, f"CREATE INDEX ON {name} (id)")
        execute(
            target_dsn,
            f"CREATE TRIGGER audit AFTER INSERT ON {name} REFERENCING NEW TABLE AS new_rows "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_copy()",
        )


class _KillMidChunk(threading.Thread):
    """Kills the first queue worker container seen in the middle of a chunk, once."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.namespace = cluster, namespace
        self.stop = threading.Event()
        self.killed: str | None = None

    def _busy(self, pod: Any) -> bool:
        try:
            log = self.cluster.core.read_namespaced_pod_log(pod.metadata.name, self.namespace)
        except Exception:
            return False
        return log.count('"event": "chunk_start"') > log.count('"event": "chunk_done"')

    def run(self) -> None:
        while not self.stop.is_set() and self.killed is None:
            pods = self.cluster.core.list_namespaced_pod(
                self.namespace, label_selector="zdtp.io/worker=queue"
            )
            for pod in pods.items:
                statuses = pod.status.container_statuses or []
                if statuses and statuses[0].state.running and self._busy(pod):
                    os.kill(container_host_pid(statuses[0].container_id), signal.SIGKILL)
                    self.killed = pod.metadata.name
                    return
            self.stop.wait(0.1)  # chunks take well under a second: look often


@pytest.mark.parametrize("fanout", ["tasks", "indexed-job", "job-per-worker", "queue", "queue-drain"])
def test_fanout_copies_a_multi_table_source_through_real_pods(
    sync_env: SyncEnv,
    source_dsn: str,
    target_dsn: str,
    cluster: Cluster,
    node_namespace: str,
    real_node: RealNode,
    fanout: str,
) -> None:
    # Parsing competes with other tests for two cores: give the DAG file more than Airflow's 30 s.
    sync_env.env["AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT"] = "180"
    _seed(source_dsn, target_dsn)
    name = f"zt-{fanout}"
    config = _config(name, node_namespace, real_node, fanout=fanout, workers=2, chunk_rows=CHUNK_ROWS)
    config["tables"] = [f"public.{t}" for t in SOURCE]
    # The killed pod's item returns after its lease: 5 s, not the default 60 s, of waiting (a
    # lease shorter than a copy is safe: tests/integration/queue/test_short_lease.py).
    config["lease_seconds"] = LEASE_SECONDS
    dag_id = sync_env.write(config)
    killer = _KillMidChunk(cluster, node_namespace) if fanout.startswith("queue") else None
    if killer:
        killer.start()
    try:
        run = sync_env.dags_test(dag_id, timeout=900)
    finally:
        if killer:
            killer.stop.set()
            killer.join()
    assert run.state == "success", run.output[-5000:]

    chunks = scalar(target_dsn, "SELECT count(*) FROM zdtp.full_chunks")
    assert (
        scalar(target_dsn, "SELECT count(*) FROM zdtp.full_chunks WHERE target_table = 'public.events'") >= 20
    )
    for table in SOURCE:
        assert duplicates(target_dsn, table, "id") == 0
        assert fingerprint(source_dsn, table) == fingerprint(target_dsn, table), table
    # Every chunk committed once: one audited COPY per chunk that had rows (empty ranges copy nothing).
    copied = scalar(target_dsn, "SELECT count(*) FROM zdtp.full_chunks WHERE rows > 0")
    assert scalar(target_dsn, "SELECT count(*) FROM audit WHERE n > 0") == copied
    if killer:
        assert killer.killed, "no queue pod was caught mid-chunk"
        with psycopg.connect(target_dsn) as conn:
            states = dict(
                conn.execute("SELECT state, count(*) FROM zdtp.work_queue GROUP BY state").fetchall()
            )
        assert states == {"done": chunks}, states  # every item done, the killed pod's one too


def test_queue_on_redis_copies_a_multi_table_source_through_real_pods(
    sync_env: SyncEnv,
    source_dsn: str,
    target_dsn: str,
    cluster: Cluster,
    node_namespace: str,
    real_node: RealNode,
    redis_url: str,  # noqa: F811  (fixture)
) -> None:
    """``fanout: queue`` + ``queue_backend: redis`` from the YAML: the queue lives in a real
    redis-server on 127.0.0.1 (hostNetwork pods reach it like PostgreSQL), the pods read its URL
    from the credentials Secret, and the copy task's check reads the same queue: every item done."""
    sync_env.env["AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT"] = "180"
    url = urlsplit(redis_url)
    conn = {"conn_type": "redis", "host": url.hostname, "port": url.port, "password": url.password}
    sync_env.env["AIRFLOW_CONN_ZT_QUEUE"] = json.dumps({**conn, "extra": {"db": int(url.path.lstrip("/"))}})
    _seed(source_dsn, target_dsn)
    config = _config(
        "zt-redis-queue", node_namespace, real_node, fanout="queue", workers=2, chunk_rows=CHUNK_ROWS
    )
    config |= {
        "tables": [f"public.{t}" for t in SOURCE],
        "queue_backend": "redis",
        "queue_conn_id": "zt_queue",
        "lease_seconds": LEASE_SECONDS,
    }
    dag_id = sync_env.write(config)

    run = sync_env.dags_test(dag_id, timeout=900)
    assert run.state == "success", run.output[-5000:]
    assert url.password not in run.output  # the URL is a credential: never in task logs

    chunks = scalar(target_dsn, "SELECT count(*) FROM zdtp.full_chunks")
    assert (
        scalar(target_dsn, "SELECT count(*) FROM zdtp.full_chunks WHERE target_table = 'public.events'") >= 20
    )
    for table in SOURCE:
        assert duplicates(target_dsn, table, "id") == 0
        assert fingerprint(source_dsn, table) == fingerprint(target_dsn, table), table
    copied = scalar(target_dsn, "SELECT count(*) FROM zdtp.full_chunks WHERE rows > 0")
    assert scalar(target_dsn, "SELECT count(*) FROM audit WHERE n > 0") == copied
    # The queue was Redis's, not the target's: every item done there, one per chunk.
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        names = {
            m.group(1)
            for k in client.scan_iter("zdtp:queue:*")
            if (m := re.match(r"zdtp:queue:\{(.+)\}:", k))
        }
        assert len(names) == 1, names
        status = check_queue(backend="redis", queue=names.pop(), url=redis_url)
    assert status.total == status.done == chunks
