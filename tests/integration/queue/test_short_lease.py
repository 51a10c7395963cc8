"""``lease_seconds`` from the sync-task file: validated there, carried in the queue Job's rendered
WorkerSpec to real queue workers, and safe when shorter than a chunk's copy.

The slow item: the target table's statement trigger waits on an advisory lock the test holds, so
worker A's chunk transaction stays open well past its 1 s lease. Worker B starts once the item
shows ``abandoned`` (lease expired) and must not copy it: on PostgreSQL the item row stays locked
by A's transaction (B's claim skips it and waits), on Redis B may claim it but its hold waits for
A's transaction, then finds the chunk checkpoint done. Only then is the gate opened. The audit
row per committed COPY proves the chunk was committed exactly once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.integration.queue._helpers import queue_env, start_queue_worker
from tests.integration.queue.test_contract import _with_queue
from tests.integration.worker_full.helpers import duplicates, execute, fingerprint, scalar
from zdtp_provider.config import SyncConfigError, load_config
from zdtp_provider.planner import TableEstimate, plan_workers
from zdtp_provider.workload.sync_task import render_sync_task
from zdtp_worker.contract.spec import WorkerSpec
from zdtp_worker.full import enqueue_chunks

GATE = 4242  # advisory lock key the target trigger waits on
ROWS = 3000
# The audit trigger of test_kill9, gated: a COPY cannot commit while the test holds GATE.
GATED_AUDIT = f"""
CREATE TABLE audit (tbl text, n bigint);
CREATE FUNCTION audit_copy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_lock({GATE});
    PERFORM pg_advisory_unlock({GATE});
    INSERT INTO audit SELECT TG_TABLE_NAME, count(*) FROM new_rows;
    RETURN NULL;
END $$;
"""


def _task(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "lease",
        "source_conn_id": "src",
        "target_conn_id": "tgt",
        "tables": ["public.t"],
        "fanout": "queue-drain",
        "chunk_rows": 10 * ROWS,  # one item: the whole table in one chunk
        **overrides,
    }


@pytest.mark.parametrize("bad", [0, -1.5, "soon"])
def test_lease_seconds_is_validated_in_the_sync_file(tmp_path: Path, bad: Any) -> None:
    path = tmp_path / "lease.yaml"
    path.write_text(yaml.safe_dump(_task(lease_seconds=bad)))
    with pytest.raises(SyncConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: lease_seconds = {bad!r}: "), message


def _work_spec(tmp_path: Path, backend: str, lease: float) -> dict[str, Any]:
    """The queue Job's WorkerSpec as rendered from a sync-task file setting ``lease_seconds``."""
    path = tmp_path / "lease.yaml"
    redis = {"queue_backend": "redis", "queue_conn_id": "q"} if backend == "redis" else {}
    path.write_text(yaml.safe_dump(_task(lease_seconds=lease, **redis)))
    config = load_config(path)
    estimate = TableEstimate(
        "public.t", rows=ROWS, bytes=ROWS * 40, pk=("id",), int_pk_min=1, int_pk_max=ROWS
    )
    specs = plan_workers(config, [estimate], run_id="lease")
    _enqueue, work = render_sync_task(config, run_id="lease", full_specs=specs)
    env = {e.name: e.value for e in work.workload.spec.template.spec.containers[0].env}
    return json.loads(env["ZDTP_WORKER_SPEC"])


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    # A bound on the test (a worker's start on a loaded 2-core machine), not a speed assertion.
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _log(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_a_lease_shorter_than_the_copy_does_not_copy_the_item_twice(
    backend: tuple[str, str | None], source_dsn: str, target_dsn: str, tmp_path: Path
) -> None:
    spec = _work_spec(tmp_path, backend[0], lease=1.0)
    assert spec["full"]["lease_seconds"] == 1.0 and spec["full"]["queue"]
    queue = spec["full"]["queue"]
    execute(source_dsn, "CREATE TABLE t (id bigint PRIMARY KEY, v text)")
    execute(source_dsn, f"INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g")
    execute(target_dsn, GATED_AUDIT)
    execute(target_dsn, "CREATE TABLE t (id bigint NOT NULL, v text)")  # keyless: a 2nd copy shows
    execute(
        target_dsn,
        "CREATE TRIGGER audit AFTER INSERT ON t REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_copy()",
    )
    items = enqueue_chunks(
        WorkerSpec.model_validate(spec), source_dsn=source_dsn, target_dsn=target_dsn, queue_url=backend[1]
    )
    assert items == 1
    env = queue_env(spec, source_dsn, target_dsn, backend)
    a_log, b_log = tmp_path / "a.log", tmp_path / "b.log"
    procs = []

    def status() -> Any:
        return _with_queue(backend, target_dsn, lambda q, _: q.status(queue))

    with psycopg.connect(target_dsn, autocommit=True) as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (GATE,))
        try:
            procs.append(start_queue_worker(env, a_log))
            _wait_for(
                "A's chunk_start",
                lambda: '"event": "chunk_start"' in _log(a_log) or procs[0].poll() is not None,
            )
            assert procs[0].poll() is None, _log(a_log)[-800:]
            # The 1 s lease from the file runs out while A's copy waits (60 s, the default, would not).
            _wait_for("A's lease to expire", lambda: [i.state for i in status().open] == ["abandoned"], 30)
            procs.append(start_queue_worker(env, b_log))
            if backend[0] == "postgres":  # the locked row is skipped: B waits for it
                _wait_for("B to wait", lambda: '"event": "queue_wait"' in _log(b_log))
            else:  # B took the expired lease over; its hold waits for A's transaction
                _wait_for("B's claim", lambda: status().open[0].attempts == 2)
            time.sleep(1.5)  # B keeps trying meanwhile (PostgreSQL: polls the queue every <= 2 s)
            assert all(p.poll() is None for p in procs), _log(a_log)[-800:] + _log(b_log)[-800:]
        finally:
            gate.execute("SELECT pg_advisory_unlock(%s)", (GATE,))
            codes = []
            for p in procs:
                try:
                    codes.append(p.wait(timeout=120))
                finally:
                    if p.poll() is None:
                        p.kill()
    assert codes == [0, 0], _log(a_log)[-800:] + _log(b_log)[-800:]
    assert _log(a_log).count('"event": "chunk_done"') == 1
    assert '"event": "chunk_start"' not in _log(b_log), _log(b_log)[-800:]
    assert scalar(target_dsn, "SELECT count(*) FROM audit") == 1  # one committed COPY
    assert scalar(target_dsn, "SELECT sum(n) FROM audit") == ROWS
    assert duplicates(target_dsn, "t", "id") == 0
    assert fingerprint(source_dsn, "t") == fingerprint(target_dsn, "t")
    final = status()
    assert final.complete and final.done == 1, final.describe()
