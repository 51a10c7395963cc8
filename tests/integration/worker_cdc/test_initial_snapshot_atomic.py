"""``--initial-snapshot`` replaces each table in one target transaction: a copy that fails or is
killed part-way leaves the table's previous content (it used to commit a TRUNCATE first)."""

from __future__ import annotations

import signal
import time

import psycopg
import pytest

from tests.integration.worker_cdc.helpers import (
    InProcessWorker,
    free_port,
    make_spec,
    start_subprocess_worker,
    table_rows,
    wait_equal,
    wait_until,
)
from zdtp_worker.contract.errors import DataError

pytestmark = pytest.mark.postgres

OLD = [(i, -1) for i in range(1, 101)]  # what the target held before the copy


def _stream_state(target_dsn: str) -> list[tuple]:
    with psycopg.connect(target_dsn) as tgt:
        if tgt.execute("SELECT to_regclass('zdtp.cdc_state')").fetchone() == (None,):
            return []
        return tgt.execute("SELECT commit_lsn::text FROM zdtp.cdc_state WHERE commit_lsn <> '0/0'").fetchall()


def test_copy_failing_mid_table_keeps_that_tables_previous_rows(source_dsn: str, target_dsn: str) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as src:
        for t in ("a", "b"):
            src.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v int NOT NULL)")
            src.execute(f"INSERT INTO {t} SELECT g, 1 FROM generate_series(1, 500) g")
        src.execute("UPDATE b SET v = 1000 WHERE id = 450")  # in b's ninth chunk of 50
    with psycopg.connect(target_dsn, autocommit=True) as tgt:
        for t in ("a", "b"):
            tgt.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v int NOT NULL)")
            tgt.execute(f"INSERT INTO {t} SELECT g, -1 FROM generate_series(1, 100) g")
        # The target refuses one source row: the copy of b fails after eight chunks went in.
        tgt.execute("ALTER TABLE b ADD CONSTRAINT small CHECK (v < 100)")
    spec = make_spec(["a", "b"])
    spec = spec.model_copy(update={"full": spec.full.model_copy(update={"chunk_rows": 50})})
    worker = InProcessWorker(spec, source_dsn, target_dsn, initial_snapshot=True).start()
    assert worker.thread is not None
    worker.thread.join(60)
    assert not worker.thread.is_alive(), "the worker should have stopped on the failed copy"
    assert isinstance(worker.error, DataError), worker.error
    assert "table public.b" in str(worker.error) and "small" in str(worker.error), worker.error
    assert table_rows(target_dsn, "b") == OLD  # not empty, not half new
    assert table_rows(target_dsn, "a") == table_rows(source_dsn, "a")  # finished tables are in
    assert _stream_state(target_dsn) == []  # the hand-off is not recorded as done

    # Fixed, the next start copies again (new slot and snapshot) and streams.
    with psycopg.connect(target_dsn, autocommit=True) as tgt:
        tgt.execute("ALTER TABLE b DROP CONSTRAINT small")
    again = InProcessWorker(spec, source_dsn, target_dsn, initial_snapshot=True).start()
    try:
        again.wait_streaming(timeout=60)
        with psycopg.connect(source_dsn, autocommit=True) as src:
            src.execute("UPDATE b SET v = 2 WHERE id <= 10")
        wait_equal(source_dsn, target_dsn, ["a", "b"], worker=again)
    finally:
        again.stop()
    assert _stream_state(target_dsn) != []


def test_killed_copy_keeps_previous_rows(source_dsn: str, target_dsn: str, tmp_path) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute("CREATE TABLE k (id int PRIMARY KEY, v int NOT NULL, pad text)")
        src.execute("INSERT INTO k SELECT g, 1, repeat('x', 200) FROM generate_series(1, 300000) g")
    with psycopg.connect(target_dsn, autocommit=True) as tgt:
        tgt.execute("CREATE TABLE k (id int PRIMARY KEY, v int NOT NULL, pad text)")
        tgt.execute("INSERT INTO k SELECT g, -1, NULL FROM generate_series(1, 100) g")
    spec = make_spec(["k"], initial_snapshot=True, health_port=free_port())
    spec = spec.model_copy(update={"full": spec.full.model_copy(update={"chunk_rows": 20_000})})
    log = tmp_path / "worker.log"
    proc = start_subprocess_worker(spec, source_dsn, target_dsn, log=log)
    try:

        def copying() -> bool:
            assert proc.poll() is None, log.read_text()
            with psycopg.connect(target_dsn) as tgt:
                row = tgt.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state = 'active' AND query ILIKE 'COPY%k%'"
                ).fetchone()
            return bool(row and row[0])

        wait_until(copying, timeout=60, interval=0.02, what="the copy to write into k")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "initial copy: public.k replaced" not in log.read_text(), "killed too late: the copy had finished"

    # The killed session's transaction is rolled back once the server notices the closed socket.
    def rolled_back() -> bool:
        with psycopg.connect(target_dsn) as tgt:
            row = tgt.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND query ILIKE 'COPY%k%' AND state <> 'idle'"
            ).fetchone()
        return row == (0,)

    wait_until(rolled_back, timeout=30, what="the killed copy's session to end")
    time.sleep(0.2)
    assert table_rows(target_dsn, "k", "id, v") == OLD
    assert _stream_state(target_dsn) == []
