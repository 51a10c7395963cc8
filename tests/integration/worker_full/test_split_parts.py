"""One table split into key ranges across workers of one run (what the Airflow planner does for a
big table): each worker owns its part's plan and progress, in parallel, and nothing is skipped."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration.worker_full.helpers import (
    duplicates,
    execute,
    fingerprint,
    make_spec,
    scalar,
    worker_env,
)
from zdtp_provider.config import SyncTaskConfig
from zdtp_provider.planner import plan_workers, read_catalog

pytestmark = pytest.mark.postgres


def test_parallel_workers_on_parts_of_one_table_copy_every_row(source_dsn: str, target_dsn: str) -> None:
    execute(source_dsn, "CREATE TABLE big (id bigint PRIMARY KEY, v text)")
    execute(source_dsn, "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 90000) g")
    execute(source_dsn, "CREATE TABLE small (id int PRIMARY KEY, v text)")
    execute(source_dsn, "INSERT INTO small SELECT g, 'x' FROM generate_series(1, 100) g")
    execute(source_dsn, "ANALYZE")
    cfg = SyncTaskConfig(
        name="split",
        source_conn_id="s",
        target_conn_id="t",
        include=["public.*"],
        workers=3,
        chunk_rows=10000,
    )
    specs = plan_workers(cfg, read_catalog(source_dsn, cfg), run_id="split-run")
    assert sum(1 for s in specs for t in s.tables if str(t.source) == "public.big" and t.key_range) == 3
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "zdtp_worker", "full"],
            env=worker_env(spec.to_json(), source_dsn, target_dsn),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for spec in specs
    ]
    outcomes = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert [code for code, _ in outcomes] == [0] * len(specs), [err[-500:] for _, err in outcomes]
    for table in ("big", "small"):
        assert fingerprint(source_dsn, table) == fingerprint(target_dsn, table), table
    assert duplicates(target_dsn, "big", "id") == 0
    assert (
        scalar(
            target_dsn, "SELECT count(DISTINCT part) FROM zdtp.full_plans WHERE target_table = 'public.big'"
        )
        == 3
    )
    # A rerun of one part with the same run id skips its finished chunks and copies nothing.
    again = subprocess.run(
        [sys.executable, "-m", "zdtp_worker", "full"],
        env=worker_env(specs[0].to_json(), source_dsn, target_dsn),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and '"rows":0' in again.stdout


def test_part_key_is_stable_and_distinct() -> None:
    from zdtp_worker.contract.spec import KeyRange
    from zdtp_worker.full.checkpoints import part_key

    a = part_key(KeyRange(lower=None, upper=[100]))
    assert a == part_key(KeyRange(lower=None, upper=[100]))
    assert a != part_key(KeyRange(lower=[100], upper=None))
    assert part_key(None) == ""
    assert make_spec(["t"]).tables[0].key_range is None
