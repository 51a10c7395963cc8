"""A failed full-sync worker still reports, per table, what it finished before the failure."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.worker_full.helpers import REPO, execute, make_spec, scalar, worker_env

pytestmark = pytest.mark.postgres


def test_failure_keeps_finished_tables_and_chunks(source_dsn: str, target_dsn: str) -> None:
    execute(
        source_dsn,
        """
        CREATE TABLE first_t (id int PRIMARY KEY, v int);
        INSERT INTO first_t SELECT g, g FROM generate_series(1, 1000) g;
        CREATE TABLE second_t (id int PRIMARY KEY, v int);
        INSERT INTO second_t SELECT g, CASE WHEN g = 900 THEN 500 ELSE 1 END FROM generate_series(1, 1000) g;
        """,
    )
    # The target's own rule rejects one row of the second table's last chunks.
    execute(target_dsn, "CREATE TABLE second_t (id int PRIMARY KEY, v int CHECK (v < 100))")
    spec = make_spec(["first_t", "second_t"], run_id="fail-run", chunk_rows=200)
    done = subprocess.run(
        [sys.executable, "-m", "zdtp_worker", "full"],
        env=worker_env(spec.to_json(), source_dsn, target_dsn),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 65, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "error" and "second_t" in result["message"]
    tables = {t["table"]: t for t in result["tables"]}
    assert tables["public.first_t"]["rows"] == 1000 and tables["public.first_t"]["chunks"] == 5
    # second_t: the chunks before the bad row are committed and counted.
    assert tables["public.second_t"]["chunks"] == 4 and tables["public.second_t"]["rows"] == 800
    assert result["rows"] == 1800 and result["chunks"] == 9
    assert scalar(target_dsn, "SELECT count(*) FROM second_t") == 800
