"""The ``full+incremental`` hand-off under every ordering of source writes around the copy.

The DAG creates the slot first (consistent point P, ``prepare_stream``), then copies the table
under later snapshots (here: one full-copy run per key range, so each range has its own snapshot
and the source writes between them), then streams from P. Changes committed between P and a
range's snapshot are in the copy *and* replayed by the stream. The writes below hit the cases
that used to stop or corrupt the stream: key changes with an unchanged TOASTed column whose old
row the target never had (exit 65 "row to move is missing"), a key changed and then reused
before its range was copied (the target's row at the old key is newer than the change), updates
of rows deleted or moved before their range was copied, inserts then deletes, moves into ranges
already copied and not yet copied. After the stream caught up, every column of every row must
equal the source's.

Parametrised over the two ways the stream applies a keyed table: ``batched`` (many changes
compacted per key in one staging pass: a key change merges with the batch's earlier row) and
``per-change`` (one change per flush: every key change with unchanged TOAST takes the row path).
"""

from __future__ import annotations

import random
import threading
import time

import psycopg
import pytest

from tests.fixtures.digest import compare
from tests.integration.worker_cdc.helpers import InProcessWorker, make_spec, table_rows, wait_until
from zdtp_worker.contract.spec import TableName, WorkerSpec
from zdtp_worker.control.names import publication_name, slot_name
from zdtp_worker.control.stream_setup import prepare_stream
from zdtp_worker.full.main import run_full
from zdtp_worker.incremental.batch import Batch
from zdtp_worker.incremental.health import Metrics
from zdtp_worker.incremental.pgoutput import UNCHANGED, Column, Relation
from zdtp_worker.incremental.target import Target

pytestmark = pytest.mark.postgres

DDL = "CREATE TABLE h (id int PRIMARY KEY, v int NOT NULL, blob text)"
# > 8 kB of random hex, stored out of line uncompressed: an UPDATE that does not touch it reaches
# the stream as an unchanged TOAST value ('u').
BLOB = "(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 320))"
# The same per seeded row (the subquery refers to the row, so each row gets its own value).
ROW_BLOB = "(SELECT string_agg(md5(random()::text || x || g), '') FROM generate_series(1, 320) x)"
# The copy's key ranges: one full-copy run (one snapshot) each, small chunks inside.
RANGES = [(None, 21), (21, 41), (41, None)]


def _source(dsn: str, *statements: str) -> None:
    """Run the statements on the source in one transaction."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        for statement in statements:
            conn.execute(statement)


def _copy_range(
    spec: WorkerSpec, source_dsn: str, target_dsn: str, lower: int | None, upper: int | None
) -> None:
    """Copy one key range the way a DAG copy worker does: its own snapshot, chunk by chunk."""
    full = WorkerSpec.model_validate(
        {
            "mode": "full",
            "task": spec.task,
            "run_id": "handoff",
            "worker": f"w{lower}",
            "tables": [
                {
                    "source": "h",
                    "key_range": {
                        "lower": None if lower is None else [lower],
                        "upper": None if upper is None else [upper],
                    },
                }
            ],
            "full": {"chunk_rows": 5, "verify": "count"},
        }
    )
    result = run_full(full, source_dsn=source_dsn, target_dsn=target_dsn)
    assert result.exit_code == 0, result.message


@pytest.mark.parametrize("batch_max_changes", [10_000, 1], ids=["batched", "per-change"])
def test_handoff_converges_whatever_the_ordering(
    source_dsn: str, target_dsn: str, batch_max_changes: int
) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute(DDL)
        src.execute("ALTER TABLE h ALTER COLUMN blob SET STORAGE EXTERNAL")
        src.execute(f"INSERT INTO h SELECT g, g, {ROW_BLOB} FROM generate_series(1, 60) g")
        assert src.execute("SELECT count(DISTINCT blob) FROM h").fetchone() == (60,)
    with psycopg.connect(target_dsn, autocommit=True) as tgt:
        tgt.execute(DDL)
    spec = make_spec(["h"], batch_max_changes=batch_max_changes)
    # The DAG's prepare_stream: publication, slot (consistent point P), stream state reset.
    prepare_stream(
        source_dsn=source_dsn,
        tables=[TableName.model_validate("h")],
        slot=slot_name(spec),
        publication=publication_name(spec),
        restart_on_target=target_dsn,
    )

    # -- after P, before any range is copied --------------------------------------------------
    _source(source_dsn, "UPDATE h SET id = 145 WHERE id = 5")  # key into a range not yet copied
    _source(source_dsn, "UPDATE h SET v = v + 1000 WHERE id IN (2, 22, 42)")  # TOAST unchanged
    _source(source_dsn, "DELETE FROM h WHERE id IN (25, 55)")  # rows a later range would copy
    _source(source_dsn, f"INSERT INTO h VALUES (300, 300, {BLOB})")  # deleted again below
    _source(source_dsn, "UPDATE h SET v = -1 WHERE id = 33", "DELETE FROM h WHERE id = 33")
    _source(source_dsn, "UPDATE h SET v = -2 WHERE id = 57")  # updated, deleted, re-inserted later
    _source(source_dsn, "DELETE FROM h WHERE id = 57")
    _copy_range(spec, source_dsn, target_dsn, *RANGES[0])

    # -- range 1 copied ------------------------------------------------------------------------
    _source(source_dsn, "UPDATE h SET id = -50 WHERE id = 50")  # key into the range already copied
    # A key changed, then reused by a new row before its range is copied: the target's row at 30
    # will be the new one, whose blob must not travel to -30.
    _source(source_dsn, "UPDATE h SET id = -30 WHERE id = 30")
    _source(source_dsn, f"INSERT INTO h VALUES (30, 3030, {BLOB})")
    _source(source_dsn, "UPDATE h SET v = v + 1 WHERE id IN (3, 4)")
    _source(source_dsn, "DELETE FROM h WHERE id = 300")
    _source(source_dsn, f"UPDATE h SET blob = {BLOB} WHERE id IN (10, 40)")
    _source(source_dsn, "UPDATE h SET v = 7 WHERE id = 145")
    _copy_range(spec, source_dsn, target_dsn, *RANGES[1])

    # -- ranges 1 and 2 copied -----------------------------------------------------------------
    _source(source_dsn, "UPDATE h SET id = 246 WHERE id = 46")  # moved twice before its copy:
    _source(source_dsn, "UPDATE h SET id = 346 WHERE id = 246")  # 246 is gone when read back
    # One transaction: a TOAST-unchanged update, then a key change of the same row.
    _source(source_dsn, "UPDATE h SET v = v + 1 WHERE id = 47", "UPDATE h SET id = 147 WHERE id = 47")
    _source(source_dsn, "DELETE FROM h WHERE id = 1")
    _copy_range(spec, source_dsn, target_dsn, *RANGES[2])

    # -- everything copied, stream not started yet ---------------------------------------------
    _source(source_dsn, f"INSERT INTO h VALUES (57, 5757, {BLOB})")
    _source(source_dsn, "UPDATE h SET id = 400 WHERE id = 48")

    worker = InProcessWorker(spec, source_dsn, target_dsn).start()
    try:
        worker.wait_streaming(timeout=60)
        # -- streaming: the ordinary case keeps working ----------------------------------------
        _source(source_dsn, "UPDATE h SET id = 500 WHERE id = 49", "UPDATE h SET v = 0 WHERE id = 500")
        _source(
            source_dsn, "UPDATE h SET v = v + 1 WHERE id BETWEEN 11 AND 20", "DELETE FROM h WHERE id = 51"
        )

        def caught_up() -> bool:
            worker.check()  # a stopped stream fails at once
            return not compare(
                source_dsn, target_dsn, schemas=["public"], tables=["public.h"], sequences="skip"
            )

        try:
            wait_until(caught_up, timeout=90, interval=0.5, what="target to equal source")
        except AssertionError:
            problems = compare(
                source_dsn, target_dsn, schemas=["public"], tables=["public.h"], sequences="skip"
            )
            raise AssertionError("target differs from source:\n" + "\n".join(problems)) from None
        assert worker.metrics is not None
        # Moves whose old row the target lacked, and partial rows it lacked, were read back.
        assert worker.metrics.rows_refetched >= 4, worker.metrics.rows_refetched
        assert worker.metrics.refetch_keys_gone >= 1, worker.metrics.refetch_keys_gone
    finally:
        worker.stop()
    with psycopg.connect(target_dsn) as tgt:
        rows = tgt.execute("SELECT count(*), count(*) FILTER (WHERE length(blob) = 10240) FROM h").fetchone()
    assert rows is not None and rows[0] == rows[1] == 56, rows  # every row kept its full blob


def test_partial_rows_the_target_lacks_are_read_from_the_source(source_dsn: str, target_dsn: str) -> None:
    """The staging path on its own: TOAST-unchanged updates ('P') of keys the target does not have
    are completed by key from the source (explicit values from the stream, unchanged ones from the
    source); a key the source no longer has is left out and counted."""
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute(DDL)
        src.execute(f"INSERT INTO h VALUES (7, 70, {BLOB}), (8, 80, {BLOB})")
        blob7 = src.execute("SELECT blob FROM h WHERE id = 7").fetchone()
    with psycopg.connect(target_dsn, autocommit=True) as tgt:
        tgt.execute(DDL)
        tgt.execute("INSERT INTO h VALUES (8, 80, 'target keeps this')")
    rel = Relation(
        oid=4242,
        namespace="public",
        name="h",
        replica_identity="d",
        columns=(Column("id", 23, -1, True), Column("v", 23, -1, False), Column("blob", 25, -1, False)),
    )
    metrics = Metrics(task="t", slot="s")
    target = Target(target_dsn, stream="zdtp_partial", source_dsn=source_dsn, metrics=metrics)
    target.connect()
    try:
        shape = target.shape(rel, TableName.model_validate("h"), ("id",))
        batch = Batch()
        for key, v in ((b"7", b"71"), (b"8", b"81"), (b"9", b"91")):  # 9: on neither side
            batch.update(rel, (0,), [key, v, UNCHANGED], None)
        target.apply(batch, {rel.oid: shape})
        assert (target.refetched, target.refetch_gone) == (1, 1)
        target.conn.commit()
    finally:
        target.close()
    assert table_rows(target_dsn, "h") == [(7, 71, blob7[0]), (8, 81, "target keeps this")]


class Writer(threading.Thread):
    """Random small transactions on ``h`` over a key domain the copy's ranges split: inserts,
    deletes, TOAST-unchanged updates, blob rewrites and key changes onto free keys (so keys are
    moved into copied and not-yet-copied ranges, and reused), until told to stop."""

    def __init__(self, dsn: str, *, seed: int, live: set[int]) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.rng = random.Random(seed)
        self.live = set(live)
        self.done = threading.Event()
        self.transactions = 0
        self.moves = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                while not self.done.is_set():
                    with conn.transaction():
                        for _ in range(self.rng.randint(1, 4)):
                            self._one(conn)
                    self.transactions += 1
                    time.sleep(0.002)
        except BaseException as exc:
            self.error = exc

    def _free(self) -> int:
        while (k := self.rng.randint(1, DOMAIN)) in self.live:
            pass
        return k

    def _one(self, conn: psycopg.Connection) -> None:
        rng, live = self.rng, self.live
        op = rng.random()
        if op < 0.2 or len(live) < 50:
            k = self._free()
            conn.execute(f"INSERT INTO h VALUES (%s, %s, {BLOB})", (k, rng.randint(0, 9)))
            live.add(k)
            return
        k = rng.choice(sorted(live))
        if op < 0.35:
            conn.execute("DELETE FROM h WHERE id = %s", (k,))
            live.discard(k)
        elif op < 0.6:
            conn.execute("UPDATE h SET v = v + 1 WHERE id = %s", (k,))  # blob unchanged
        elif op < 0.7:
            conn.execute(f"UPDATE h SET blob = {BLOB} WHERE id = %s", (k,))
        else:
            k2 = self._free()
            conn.execute("UPDATE h SET id = %s WHERE id = %s", (k2, k))  # blob unchanged
            live.discard(k)
            live.add(k2)
            self.moves += 1


DOMAIN = 1000
WRITER_RANGES = [(None, 201), (201, 401), (401, 601), (601, 801), (801, None)]


@pytest.mark.parametrize("batch_max_changes", [10_000, 1], ids=["batched", "per-change"])
def test_handoff_converges_with_a_writer_running_throughout(
    source_dsn: str, target_dsn: str, batch_max_changes: int, seed: int
) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute(DDL)
        src.execute("ALTER TABLE h ALTER COLUMN blob SET STORAGE EXTERNAL")
        src.execute(f"INSERT INTO h SELECT g, g, {ROW_BLOB} FROM generate_series(1, {DOMAIN}, 3) g")
        live = {r[0] for r in src.execute("SELECT id FROM h").fetchall()}
    with psycopg.connect(target_dsn, autocommit=True) as tgt:
        tgt.execute(DDL)
    spec = make_spec(["h"], batch_max_changes=batch_max_changes)
    prepare_stream(
        source_dsn=source_dsn,
        tables=[TableName.model_validate("h")],
        slot=slot_name(spec),
        publication=publication_name(spec),
        restart_on_target=target_dsn,
    )
    writer = Writer(source_dsn, seed=seed, live=live)
    writer.start()
    worker: InProcessWorker | None = None
    try:
        for lower, upper in WRITER_RANGES:  # each range its own snapshot, the writer never pauses
            time.sleep(0.3)
            _copy_range(spec, source_dsn, target_dsn, lower, upper)
        worker = InProcessWorker(spec, source_dsn, target_dsn).start()
        worker.wait_streaming(timeout=60)
        time.sleep(2.0)  # and on while streaming
        writer.done.set()
        writer.join(10)
        assert writer.error is None, writer.error
        assert writer.transactions > 100 and writer.moves > 20, (writer.transactions, writer.moves)

        def caught_up() -> bool:
            assert worker is not None
            worker.check()
            return not compare(
                source_dsn, target_dsn, schemas=["public"], tables=["public.h"], sequences="skip"
            )

        try:
            wait_until(caught_up, timeout=90, interval=0.5, what="target to equal source")
        except AssertionError:
            problems = compare(
                source_dsn, target_dsn, schemas=["public"], tables=["public.h"], sequences="skip"
            )
            raise AssertionError(
                f"seed {seed}: target differs from source:\n" + "\n".join(problems)
            ) from None
        print(f"seed {seed}: {writer.transactions} transactions, {writer.moves} key changes")
    finally:
        writer.done.set()
        if worker is not None:
            worker.stop()
