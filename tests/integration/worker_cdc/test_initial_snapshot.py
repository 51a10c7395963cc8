"""``--initial-snapshot``: slot with exported snapshot, full copy under it, then stream: no gap, no dup."""

from __future__ import annotations

import random
import threading
import time

import psycopg
import pytest

from tests.integration.worker_cdc.helpers import InProcessWorker, make_spec, state, wait_equal

pytestmark = pytest.mark.postgres


class BusySource(threading.Thread):
    """Bumps counters and inserts rows in small transactions, before, during and after the copy."""

    def __init__(self, dsn: str, first_new_id: int) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.next_id = first_new_id
        self.done = threading.Event()
        self.transactions = 0

    def run(self) -> None:
        rng = random.Random(7)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.done.is_set():
                with conn.transaction():
                    conn.execute(
                        "UPDATE t SET counter = counter + 1 WHERE id = ANY(%s)",
                        ([rng.randrange(1, self.next_id) for _ in range(20)],),
                    )
                    conn.execute("INSERT INTO t VALUES (%s, 0, 'new')", (self.next_id,))
                    self.next_id += 1
                self.transactions += 1
                time.sleep(0.002)


def test_initial_snapshot_then_stream_with_concurrent_writes(source_dsn: str, target_dsn: str) -> None:
    rows = 100_000
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute("CREATE TABLE t (id int PRIMARY KEY, counter int NOT NULL, note text)")
        src.execute("INSERT INTO t SELECT g, 0, 'seed' FROM generate_series(1, %s) g", (rows,))
    with psycopg.connect(target_dsn, autocommit=True) as tgt:
        tgt.execute("CREATE TABLE t (id int PRIMARY KEY, counter int NOT NULL, note text)")
        tgt.execute("CREATE TABLE audit (id int NOT NULL, counter int NOT NULL)")
        tgt.execute(
            "CREATE FUNCTION audit_t() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN INSERT INTO audit VALUES (NEW.id, NEW.counter); RETURN NEW; END$$"
        )
        tgt.execute(
            "CREATE TRIGGER t_audit AFTER INSERT OR UPDATE ON t FOR EACH ROW EXECUTE FUNCTION audit_t()"
        )
    busy = BusySource(source_dsn, rows + 1)
    busy.start()
    spec = make_spec(["t"])
    spec = spec.model_copy(update={"full": spec.full.model_copy(update={"chunk_rows": 20_000})})
    worker = InProcessWorker(spec, source_dsn, target_dsn, initial_snapshot=True).start()
    try:
        worker.wait_streaming(timeout=120)
        time.sleep(1.0)  # more writes after the hand-off
        busy.done.set()
        busy.join(10)
        wait_equal(source_dsn, target_dsn, ["t"], worker=worker, timeout=60)
    finally:
        busy.done.set()
        worker.stop()
    assert busy.transactions > 50
    with psycopg.connect(target_dsn) as tgt:
        twice = tgt.execute(
            "SELECT id, counter FROM audit GROUP BY 1, 2 HAVING count(*) > 1 LIMIT 5"
        ).fetchall()
    assert twice == []
    assert state(target_dsn)[0][1] != "0/0"
    # A restart with --initial-snapshot does not copy again: state says the hand-off is done.
    with psycopg.connect(target_dsn) as tgt:
        audited = tgt.execute("SELECT count(*) FROM audit").fetchone()
    again = InProcessWorker(spec, source_dsn, target_dsn, initial_snapshot=True).start().wait_streaming()
    again.stop()
    with psycopg.connect(target_dsn) as tgt:
        assert tgt.execute("SELECT count(*) FROM audit").fetchone() == audited
