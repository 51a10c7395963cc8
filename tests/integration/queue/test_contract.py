"""The work-queue contract, the same tests over every backend (PostgreSQL in the target, a real
Redis): idempotent enqueue keyed by run, exclusive claims, leases that return a dead worker's
item, the fence that lets only one holder commit a chunk, and a status that names open items."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.queue._helpers import expire_leases, queue_env, run_queue_worker, start_queue_worker
from tests.integration.worker_full.helpers import execute, fingerprint, make_spec, spec_dict
from zdtp_worker.full import enqueue_chunks
from zdtp_worker.full.session import connect
from zdtp_worker.queue import Item, QueueBackend
from zdtp_worker.queue.opener import open_queue

pytestmark = pytest.mark.postgres


def _items(n: int, run: str = "r1") -> list[tuple[str, dict[str, Any]]]:
    return [(f"{run}/t/{i}", {"run_id": run, "n": i}) for i in range(n)]


def _with_queue(backend: tuple[str, str | None], target_dsn: str, body: Any) -> Any:
    """Run ``body(queue, conn)`` against a freshly opened backend on a target session."""

    async def go() -> Any:
        conn = await connect(target_dsn, role="target")
        work: QueueBackend = await open_queue(backend[0], target=conn, url=backend[1])  # type: ignore[arg-type]
        try:
            await work.bootstrap()
            return await body(work, conn)
        finally:
            await work.close()
            await conn.close()

    return asyncio.run(go())


def test_enqueue_is_idempotent_per_key(backend: tuple[str, str | None], target_dsn: str) -> None:
    async def body(q: QueueBackend, _: Any) -> tuple[int, int, int, tuple[int, float | None]]:
        first = await q.enqueue("q", _items(5))
        again = await q.enqueue("q", _items(5))
        other_run = await q.enqueue("q", _items(2, run="r2"))
        return first, again, other_run, await q.open_items("q")

    first, again, other_run, (left, wait) = _with_queue(backend, target_dsn, body)
    assert (first, again, other_run) == (5, 0, 2)
    assert left == 7 and wait is None


def test_claims_are_exclusive_and_done_items_stay_done(
    backend: tuple[str, str | None], target_dsn: str
) -> None:
    async def body(q: QueueBackend, conn: Any) -> tuple[list[int], Any, Any]:
        await q.enqueue("q", _items(4))
        # Concurrent claimers are real worker processes in test_kill9; here: six claims in a row.
        got = [await q.claim("q", owner=f"w{i}", lease_seconds=60) for i in range(6)]
        taken = [i for i in got if i is not None]
        for item in taken[:2]:
            async with conn.transaction():
                assert await q.hold(item, owner=next(f"w{i}" for i, g in enumerate(got) if g is item))
                await q.complete(item)
            await q.settle()
        return sorted(i.item_id for i in taken), await q.open_items("q"), await q.status("q")

    ids, (left, wait), status = _with_queue(backend, target_dsn, body)
    assert len(ids) == 4 and len(set(ids)) == 4  # six claims, four items, none twice
    assert left == 2 and wait is not None and 0 < wait <= 60
    assert status.total == 4 and status.done == 2 and not status.complete
    assert [i.state for i in status.open] == ["leased", "leased"]


def test_expired_lease_returns_the_item_and_fences_the_old_owner(
    backend: tuple[str, str | None], target_dsn: str
) -> None:
    async def body(q: QueueBackend, conn: Any) -> tuple[Item, Item, bool, bool, Any, Any]:
        await q.enqueue("q", _items(1))
        dead = await q.claim("q", owner="dead", lease_seconds=0.3)
        assert dead is not None and await q.claim("q", owner="other", lease_seconds=60) is None
        while (await q.status("q")).open[0].state != "abandoned":  # the lease runs out
            await asyncio.sleep(0.1)
        abandoned = await q.status("q")
        alive = await q.claim("q", owner="alive", lease_seconds=60)
        assert alive is not None
        async with conn.transaction():
            stale = await q.hold(dead, owner="dead")  # the dead worker woke up: not its item anymore
        async with conn.transaction():
            fresh = await q.hold(alive, owner="alive")
            await q.complete(alive)
        await q.settle()
        return dead, alive, stale, fresh, abandoned, await q.status("q")

    dead, alive, stale, fresh, abandoned, final = _with_queue(backend, target_dsn, body)
    assert alive.item_id == dead.item_id and alive.attempts == 2
    assert not stale and fresh
    assert abandoned.open[0].state == "abandoned" and abandoned.open[0].owner == "dead"
    assert "(abandoned, 1 attempts)" in abandoned.describe()
    assert final.complete and final.done == 1


def test_a_rolled_back_chunk_leaves_its_item_open(backend: tuple[str, str | None], target_dsn: str) -> None:
    async def body(q: QueueBackend, conn: Any) -> Any:
        await q.enqueue("q", _items(1))
        item = await q.claim("q", owner="w", lease_seconds=60)
        assert item is not None
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                assert await q.hold(item, owner="w")
                await q.complete(item)
                raise RuntimeError("chunk failed")
        q.forget()
        await q.settle()
        return await q.status("q")

    status = _with_queue(backend, target_dsn, body)
    assert status.done == 0 and [i.state for i in status.open] == ["leased"]


def test_one_mode_pod_waits_for_a_dead_workers_lease(
    backend: tuple[str, str | None], source_dsn: str, target_dsn: str, tmp_path: Path
) -> None:
    """A ``one`` pod that finds only a leased item must not exit 0 with the item never copied:
    it waits for the lease to expire, takes the item over and copies it."""
    execute(source_dsn, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    execute(source_dsn, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 3000) g")
    spec = make_spec(["t"], run_id="r1", chunk_rows=1000, queue="q", queue_backend=backend[0])
    assert enqueue_chunks(spec, source_dsn=source_dsn, target_dsn=target_dsn, queue_url=backend[1]) == 3

    async def lease_all(q: QueueBackend, _: Any) -> None:
        for _i in range(3):
            assert await q.claim("q", owner="crashed-pod", lease_seconds=3600) is not None

    _with_queue(backend, target_dsn, lease_all)
    worker_spec = spec_dict([], run_id="r1", queue="q", queue_backend=backend[0], lease_seconds=30)
    env = queue_env(worker_spec, source_dsn, target_dsn, backend)
    log = tmp_path / "one.log"
    proc = start_queue_worker(env, log, "--queue-mode", "one")
    try:
        for _i in range(600):  # until it reports waiting (or exits: then the assertions below say why)
            if '"event": "queue_wait"' in log.read_text() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.poll() is None, log.read_text()[-800:]  # still waiting: it did not exit 0 empty-handed
        expire_leases(backend, target_dsn, "q")  # the crashed pod's leases run out
        assert proc.wait(timeout=120) == 0, log.read_text()[-800:]
    finally:
        if proc.poll() is None:
            proc.kill()
    # It took over exactly one expired item and copied it.
    assert log.read_text().count('"event": "chunk_done"') == 1
    status = _with_queue(backend, target_dsn, lambda q, _: q.status("q"))
    assert status.done == 1 and len(status.open) == 2
    # Two more one-mode pods finish the queue; a fourth finds it empty and exits 0 doing nothing.
    for _i in range(3):
        r = run_queue_worker(env, "--queue-mode", "one")
        assert r.returncode == 0, r.stderr[-800:]
    assert '"event": "queue_empty"' in r.stderr
    assert _with_queue(backend, target_dsn, lambda q, _: q.status("q")).complete
    assert fingerprint(source_dsn, "t") == fingerprint(target_dsn, "t")


def test_enqueue_pod_reports_open_items(
    backend: tuple[str, str | None], source_dsn: str, target_dsn: str
) -> None:
    """``zdtp-worker full --enqueue`` (the copy task's enqueue pod): its result counts the items
    not done yet, which a ``queue`` Job takes as completions; a rerun adds nothing."""
    import json

    execute(source_dsn, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    execute(source_dsn, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g")
    spec = spec_dict(["t"], run_id="r1", chunk_rows=1000, queue="q", queue_backend=backend[0])
    env = queue_env(spec, source_dsn, target_dsn, backend)
    results = []
    for _i in range(2):
        r = run_queue_worker(env, "--enqueue")
        assert r.returncode == 0, r.stderr[-800:]
        results.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert [x["chunks"] for x in results] == [5, 5]
    assert "5 item(s) enqueued" in results[0]["message"] and "0 item(s) enqueued" in results[1]["message"]


def test_airflow_side_check_names_items_not_done(backend: tuple[str, str | None], target_dsn: str) -> None:
    """``control.queue.check_queue`` (psycopg 3 / redis-py, what the copy task runs after its Job)
    fails naming ready, leased and abandoned items, and passes once every item is done."""
    from zdtp_worker.control.queue import QueueIncomplete, check_queue

    def check() -> Any:
        return check_queue(backend=backend[0], queue="q", target_dsn=target_dsn, url=backend[1])  # type: ignore[arg-type]

    async def setup(q: QueueBackend, _: Any) -> None:
        await q.enqueue("q", _items(3))
        assert await q.claim("q", owner="gone", lease_seconds=0.2) is not None
        assert await q.claim("q", owner="alive", lease_seconds=600) is not None

    _with_queue(backend, target_dsn, setup)

    def status(q: QueueBackend, _: Any) -> Any:
        return q.status("q")

    while "abandoned" not in _with_queue(backend, target_dsn, status).describe():  # the short lease runs out
        time.sleep(0.1)
    with pytest.raises(QueueIncomplete) as err:
        check()
    assert "0/3 items done" in str(err.value)
    for text in (
        "r1/t/0 (abandoned, 1 attempts)",
        "r1/t/1 (leased, 1 attempts)",
        "r1/t/2 (ready, 0 attempts)",
    ):
        assert text in str(err.value)
    with pytest.raises(QueueIncomplete, match="holds no items"):
        check_queue(backend=backend[0], queue="other", expected=3, target_dsn=target_dsn, url=backend[1])  # type: ignore[arg-type]

    async def finish(q: QueueBackend, conn: Any) -> None:
        while (item := await q.claim("q", owner="w", lease_seconds=60)) is not None:
            async with conn.transaction():
                assert await q.hold(item, owner="w")
                await q.complete(item)
            await q.settle()
        expire_leases(backend, target_dsn, "q")  # the "alive" pod's item: taken over and finished
        item = await q.claim("q", owner="w", lease_seconds=60)
        assert item is not None
        async with conn.transaction():
            assert await q.hold(item, owner="w")
            await q.complete(item)
        await q.settle()

    _with_queue(backend, target_dsn, finish)
    status = check()
    assert status.complete and status.done == 3
