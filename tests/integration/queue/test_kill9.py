"""Exactly once under ``kill -9``, per backend: three draining queue workers (real processes) are
killed in the middle of chunks and restarted; every item ends done exactly once.

The audit is in the target itself: the target tables exist beforehand without a primary key
(a chunk committed twice would show as duplicate ids, not a key violation) and carry a
statement-level trigger that records each committed COPY with its row count in ``audit``. A
killed worker's COPY rolls back with its audit row, so ``count(audit) == chunks`` proves that
every chunk was copied and committed once — with ``zdtp.full_chunks`` and the checksums equal.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.queue._helpers import queue_env, start_queue_worker
from tests.integration.queue.test_contract import _with_queue
from tests.integration.worker_full.helpers import (
    duplicates,
    execute,
    fingerprint,
    make_spec,
    scalar,
    spec_dict,
)
from zdtp_worker.full import enqueue_chunks

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

KILLS = 3
TABLES = {
    # name: (columns, rows SQL, chunk rows) — one integer-keyed table of 25 chunks, one sampled (uuid).
    "big": ("id bigint NOT NULL, v text", "SELECT g, md5(g::text) FROM generate_series(1, 200000) g"),
    "ids": ("id uuid NOT NULL, n int", "SELECT md5(g::text)::uuid, g FROM generate_series(1, 20000) g"),
}
AUDIT = """
CREATE TABLE audit (tbl text, n bigint);
CREATE FUNCTION audit_copy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit SELECT TG_TABLE_NAME, count(*) FROM new_rows; RETURN NULL; END $$;
"""


def _prepare(source_dsn: str, target_dsn: str) -> None:
    execute(target_dsn, AUDIT)
    for name, (cols, rows) in TABLES.items():
        execute(source_dsn, f"CREATE TABLE {name} ({cols}, PRIMARY KEY (id))")
        execute(source_dsn, f"INSERT INTO {name} {rows}")
        execute(source_dsn, f"VACUUM ANALYZE {name}")
        execute(target_dsn, f"CREATE TABLE {name} ({cols})")
        execute(target_dsn, f"CREATE INDEX ON {name} (id)")
        execute(
            target_dsn,
            f"CREATE TRIGGER audit AFTER INSERT ON {name} REFERENCING NEW TABLE AS new_rows "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_copy()",
        )


def _in_chunk(log: Path) -> bool:
    text = log.read_text() if log.exists() else ""
    return text.count('"event": "chunk_start"') > text.count('"event": "chunk_done"')


def test_kill9_queue_workers_every_item_done_exactly_once(
    backend: tuple[str, str | None], source_dsn: str, target_dsn: str, tmp_path: Path, seed: int
) -> None:
    _prepare(source_dsn, target_dsn)
    full: dict[str, Any] = {"queue": "q", "queue_backend": backend[0], "lease_seconds": 2.0}
    spec = make_spec(list(TABLES), run_id="k9", chunk_rows=8000, **full)
    items = enqueue_chunks(spec, source_dsn=source_dsn, target_dsn=target_dsn, queue_url=backend[1])
    assert items >= 25 + 3
    env = queue_env(spec_dict([], run_id="k9", **full), source_dsn, target_dsn, backend)
    rng = random.Random(seed)
    logs = [tmp_path / f"w{i}-0.log" for i in range(3)]
    procs = [start_queue_worker(env, log) for log in logs]
    current, kills = list(logs), 0
    deadline = time.monotonic() + 300  # a bound on the test, not an assertion about speed
    try:
        while kills < KILLS and time.monotonic() < deadline:
            # Short, seeded pauses: a chunk copy takes tens of ms, and a loaded machine starves this loop.
            time.sleep(rng.uniform(0.01, 0.06))
            if all(p.poll() is not None for p in procs):
                break
            busy = [i for i, p in enumerate(procs) if p.poll() is None and _in_chunk(current[i])]
            if not busy:
                continue
            victim = rng.choice(busy)
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            kills += 1
            current[victim] = tmp_path / f"w{victim}-{kills}.log"
            logs.append(current[victim])
            procs[victim] = start_queue_worker(env, current[victim])
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    tails = [log.read_text()[-600:] for log in current]
    assert codes == [0, 0, 0], tails
    assert kills == KILLS, "the workers finished before every kill landed mid-chunk"

    status = _with_queue(backend, target_dsn, lambda q, _: q.status("q"))
    assert status.complete and status.done == items, status.describe()
    assert scalar(target_dsn, "SELECT count(*) FROM zdtp.full_chunks WHERE run_id = 'k9'") == items
    assert scalar(target_dsn, "SELECT count(*) FROM audit") == items  # chunk copies committed == chunks
    for name in TABLES:
        assert scalar(target_dsn, "SELECT sum(n) FROM audit WHERE tbl = %s", (name,)) == scalar(
            source_dsn, f"SELECT count(*) FROM {name}"
        )
        assert duplicates(target_dsn, name, "id") == 0
        assert fingerprint(source_dsn, name) == fingerprint(target_dsn, name)
    starts = sum(log.read_text().count('"event": "chunk_start"') for log in logs)
    assert items <= starts <= items + kills  # a kill redoes at most the chunk it interrupted
