"""Auto ``streams``: the planner gives a big table's worker more than one COPY stream from the real
catalog, and the worker then really copies over that many concurrent target sessions."""

from __future__ import annotations

import subprocess
import sys
import time
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.integration.worker_full.helpers import REPO, execute, fingerprint, scalar, worker_env
from zdtp_provider.config import SyncTaskConfig
from zdtp_provider.planner import plan_workers, read_catalog

pytestmark = pytest.mark.postgres


def _config(**kw: object) -> SyncTaskConfig:
    return SyncTaskConfig.model_validate(
        {"name": "auto", "source_conn_id": "s", "target_conn_id": "t", "workers": 1, **kw}
    )


def test_big_table_is_copied_over_more_than_one_stream(source_dsn: str, target_dsn: str, tmp_path) -> None:
    execute(source_dsn, "CREATE TABLE big (id bigint PRIMARY KEY, v text NOT NULL)")
    execute(source_dsn, "INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 200000) g")
    execute(source_dsn, "CREATE TABLE small (id int PRIMARY KEY, v text)")
    execute(source_dsn, "INSERT INTO small SELECT g, 'v' FROM generate_series(1, 100) g")
    execute(source_dsn, "ANALYZE")
    cfg = _config(tables=["public.big", "public.small"], chunk_rows=10_000)  # 20 chunks of big

    [spec] = plan_workers(cfg, read_catalog(source_dsn, cfg), run_id="auto-1")
    assert spec.full.streams == 2  # default request 250m; 20 chunks
    [small] = plan_workers(_config(tables=["public.small"]), read_catalog(source_dsn, cfg), run_id="auto-2")
    assert small.full.streams == 1

    # Run the planned spec as a real worker process; watch the target for the sessions that COPY.
    target_db = urlsplit(target_dsn).path.lstrip("/")
    log = (tmp_path / "worker.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "zdtp_worker", "full"],
        env=worker_env(spec.to_json(), source_dsn, target_dsn),
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    copying: set[int] = set()
    with psycopg.connect(target_dsn, autocommit=True) as watch:
        while proc.poll() is None:
            rows = watch.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s"
                " AND application_name = 'zdtp-worker-full' AND query LIKE 'COPY %%FROM STDIN%%'",
                (target_db,),
            ).fetchall()
            copying.update(r[0] for r in rows)
            time.sleep(0.01)
    log.seek(0)
    assert proc.wait() == 0, log.read()[-2000:]
    assert len(copying) == 2, copying  # two target sessions copied chunks: two streams
    assert fingerprint(source_dsn, "big") == fingerprint(target_dsn, "big")
    assert fingerprint(source_dsn, "small") == fingerprint(target_dsn, "small")
    assert scalar(target_dsn, "SELECT count(*) FROM zdtp.full_chunks WHERE target_table = 'public.big'") == 20


def test_explicit_request_keeps_one_stream(source_dsn: str) -> None:
    execute(source_dsn, "CREATE TABLE big (id bigint PRIMARY KEY)")
    execute(source_dsn, "INSERT INTO big SELECT g FROM generate_series(1, 200000) g")
    execute(source_dsn, "ANALYZE")
    cfg = _config(tables=["public.big"], chunk_rows=10_000, resources={"requests": {"cpu": "100m"}})
    [spec] = plan_workers(cfg, read_catalog(source_dsn, cfg), run_id="auto-3")
    assert spec.full.streams == 1  # a tenth of a core relays one stream
