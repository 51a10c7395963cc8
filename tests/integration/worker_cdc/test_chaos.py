"""Chaos: kill -9 the worker again and again while a generator writes; nothing lost, nothing twice.

The target audits every row write through a trigger. Updates bump a per-row counter by one, ids
are never reused, so a source change applied twice would write the same (id, counter) twice.
The generator's changes and the kill moments come from the ``seed`` fixture (``ZDTP_TEST_SEED``
replays them; a failure's report prints the seed).
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import pytest

from tests.integration.worker_cdc.helpers import (
    free_port,
    make_spec,
    start_subprocess_worker,
    wait_equal,
    wait_until,
)
from tests.integration.worker_cdc.test_process import http_get

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TARGET_CHANGES = 100_000
KILLS = 6


def ready(port: int) -> bool:
    return http_get(port, "/readyz")[0] == 200


class Generator(threading.Thread):
    def __init__(self, dsn: str, *, seed: int) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.rng = random.Random(seed)
        self.changes = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = exc

    def _run(self) -> None:
        live: list[int] = []
        next_id = 1
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while self.changes < TARGET_CHANGES:
                started = time.monotonic()
                with conn.transaction():
                    n_ins = self.rng.randint(5, 40)
                    conn.execute(
                        "INSERT INTO chaos SELECT g, 0, md5(g::text)"
                        " FROM generate_series(%s::int, %s::int) g",
                        (next_id, next_id + n_ins - 1),
                    )
                    live.extend(range(next_id, next_id + n_ins))
                    next_id += n_ins
                    ids = self.rng.sample(live, min(len(live), self.rng.randint(10, 60)))
                    cur = conn.execute("UPDATE chaos SET counter = counter + 1 WHERE id = ANY(%s)", (ids,))
                    changes = n_ins + cur.rowcount
                    if len(live) > 100 and self.rng.random() < 0.5:
                        gone = [live.pop(self.rng.randrange(len(live))) for _ in range(3)]
                        cur = conn.execute("DELETE FROM chaos WHERE id = ANY(%s)", (gone,))
                        changes += cur.rowcount
                self.changes += changes
                # ~8k changes/s: the run lasts long enough for several kills.
                time.sleep(max(0.0, changes / 8000 - (time.monotonic() - started)))


def test_kill_9_during_stream_loses_and_duplicates_nothing(
    source_dsn: str, target_dsn: str, tmp_path: Path, seed: int
) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute("CREATE TABLE chaos (id int PRIMARY KEY, counter int NOT NULL, payload text)")
    with psycopg.connect(target_dsn, autocommit=True) as tgt:
        tgt.execute("CREATE TABLE chaos (id int PRIMARY KEY, counter int NOT NULL, payload text)")
        tgt.execute("CREATE TABLE audit (id int NOT NULL, counter int NOT NULL)")
        tgt.execute(
            "CREATE FUNCTION audit_chaos() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN INSERT INTO audit VALUES (NEW.id, NEW.counter); RETURN NEW; END$$"
        )
        tgt.execute(
            "CREATE TRIGGER chaos_audit AFTER INSERT OR UPDATE ON chaos"
            " FOR EACH ROW EXECUTE FUNCTION audit_chaos()"
        )
    port = free_port()
    spec = make_spec(["chaos"], batch_max_changes=2000, health_port=port)
    log = tmp_path / "worker.log"
    rng = random.Random(seed)
    proc = start_subprocess_worker(spec, source_dsn, target_dsn, log=log)
    wait_until(lambda: ready(port), timeout=30, what="first worker streaming")  # slot exists
    gen = Generator(source_dsn, seed=seed)
    gen.start()
    kills = 0
    try:
        while gen.is_alive() or kills < KILLS:
            if kills % 4 != 3:
                # Mostly kill while streaming and applying; every 4th kill hits the start-up.
                wait_until(lambda: ready(port), timeout=60, what="restarted worker streaming")
            time.sleep(rng.uniform(0.1, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills += 1
            proc = start_subprocess_worker(spec, source_dsn, target_dsn, log=log)
        gen.join()
        assert gen.error is None, gen.error
        assert gen.changes >= TARGET_CHANGES
        wait_equal(source_dsn, target_dsn, ["chaos"], timeout=120)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert kills >= KILLS
    assert log.read_text().count("streaming slot") >= KILLS
    with psycopg.connect(target_dsn) as tgt:
        twice = tgt.execute(
            "SELECT id, counter, count(*) FROM audit GROUP BY 1, 2 HAVING count(*) > 1 LIMIT 5"
        ).fetchall()
        assert twice == [], f"changes applied twice (seed {seed}): {twice}"
        regressed = tgt.execute(
            "SELECT a.id FROM audit a JOIN chaos c USING (id) GROUP BY a.id, c.counter"
            " HAVING max(a.counter) <> c.counter LIMIT 5"
        ).fetchall()
        assert regressed == []
    print(f"chaos: seed {seed}, {gen.changes} changes, {kills} kills")
