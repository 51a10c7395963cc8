"""Verify without a quiet source (issue 13): each chunk records a source/target pair taken under
its own snapshot and in its own target transaction; ``verify`` checks the recorded pairs, the
plan's coverage and the target's totals, never the live source.

Real PostgreSQL, real worker code (in-process and as a subprocess for the exit code).
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import psycopg
import pytest

from tests.integration.worker_full.helpers import execute, make_spec, run_worker, scalar, spec_dict
from zdtp_worker.contract.errors import ExitCode
from zdtp_worker.control.verify import compare_tables, verify_run
from zdtp_worker.full import enqueue_chunks, ensure_target_table, run_full
from zdtp_worker.pg.checksum import checksum_sql

pytestmark = pytest.mark.postgres

ROWS = 60_000
COLUMNS = "id integer PRIMARY KEY, v text, n numeric(12,2), r real, c varchar(10), big text"


def _source_table(dsn: str, rows: int = ROWS) -> None:
    execute(dsn, f"CREATE TABLE t ({COLUMNS})")
    execute(
        dsn,
        "INSERT INTO t SELECT g, 'v' || g, g / 7.0, g / 3.0, left(md5(g::text), 10), "
        "CASE WHEN g % 500 = 0 THEN repeat(md5(g::text), 300) END "
        f"FROM generate_series(1, {rows}) g",
    )
    execute(dsn, "ANALYZE t")


class Writer(threading.Thread):
    """Commits inserts, updates (some moving a row's key) and deletes on ``t`` until stopped."""

    def __init__(self, dsn: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.dsn, self.rng = dsn, random.Random(seed)
        self.done = threading.Event()
        self.counts = {"insert": 0, "update": 0, "move": 0, "delete": 0}
        self.error: BaseException | None = None

    def total(self) -> int:
        return sum(self.counts.values())

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                while not self.done.is_set():
                    self._one(conn)
                    time.sleep(0.002)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def _one(self, conn: psycopg.Connection) -> None:
        rng, key = self.rng, self.rng.randint(1, 2 * ROWS)
        kind = rng.choice(list(self.counts))
        try:
            if kind == "insert":
                sql = "INSERT INTO t VALUES (%s, 'new', 1.5, 0.25, 'w', NULL) ON CONFLICT DO NOTHING"
                cur = conn.execute(sql, (key,))
            elif kind == "update":
                cur = conn.execute("UPDATE t SET v = v || '+', n = n + 1 WHERE id = %s", (key % ROWS + 1,))
            elif kind == "move":
                cur = conn.execute("UPDATE t SET id = %s WHERE id = %s", (key, rng.randint(1, ROWS)))
            else:
                cur = conn.execute("DELETE FROM t WHERE id = %s", (key % ROWS + 1,))
        except psycopg.errors.UniqueViolation:
            return
        if cur.rowcount:
            self.counts[kind] += 1

    def stop(self) -> dict[str, int]:
        self.done.set()
        self.join(timeout=30)
        if self.error is not None:
            raise self.error
        return dict(self.counts)


def _verify(target_dsn: str, run_id: str, level: str) -> Any:
    return verify_run(target_dsn=target_dsn, task="t1", run_id=run_id, tables=["public.t"], level=level)


def _copy(source_dsn: str, target_dsn: str, run_id: str, **full: Any) -> None:
    run_full(make_spec(["t"], run_id=run_id, **full), source_dsn=source_dsn, target_dsn=target_dsn)


def _run_parts(source_dsn: str, target_dsn: str, *, run_id: str, verify: str) -> None:
    """Two workers, each with its own snapshot and key range, as the DAG's plan would start them."""
    specs = [
        make_spec(
            [{"source": "t", "key_range": rng}], run_id=run_id, chunk_rows=2_000, verify=verify
        ).model_copy(update={"worker": f"w{i}"})
        for i, rng in enumerate(
            ({"lower": None, "upper": [ROWS // 2]}, {"lower": [ROWS // 2], "upper": None})
        )
    ]
    errors: list[BaseException] = []

    def one(spec: Any) -> None:
        try:
            run_full(spec, source_dsn=source_dsn, target_dsn=target_dsn)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(s,)) for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


@pytest.mark.parametrize("level", ["count", "checksum"])
def test_verify_passes_while_the_source_keeps_writing(
    source_dsn: str, target_dsn: str, level: str, seed: int
) -> None:
    _source_table(source_dsn)
    writer = Writer(source_dsn, seed)
    writer.start()
    try:
        while writer.total() < 20:  # the source is writing before the copy starts
            time.sleep(0.01)
        before = writer.total()
        _run_parts(source_dsn, target_dsn, run_id="live", verify=level)
        during = writer.total() - before
        # (a) verify passes from the recorded evidence, with the writer still running.
        result = _verify(target_dsn, "live", level)
    finally:
        counts = writer.stop()
    print(f"writer: {counts}, {during} change(s) committed during the copy")
    assert result.ok, result.problems
    (table,) = result.tables
    assert table.chunks == table.recorded >= 20
    assert table.live_rows == table.target_rows == table.source_rows > 0
    if level == "checksum":
        assert table.live_checksum == table.target_checksum == table.source_checksum
    assert scalar(
        target_dsn,
        "SELECT ok FROM zdtp.verify_log WHERE task = 't1' AND run_id = 'live'",
    )
    # (b) The source really changed during the copy, so the old live comparison fails here.
    assert during > 0 and all(counts[k] > 0 for k in ("insert", "update", "delete")), counts
    live = compare_tables(source_dsn=source_dsn, target_dsn=target_dsn, tables=["public.t"], level="checksum")
    assert not live[0].equal, live


def _chunk_rows(target_dsn: str, run_id: str) -> dict[int, tuple]:
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT chunk_no, rows, source_rows, source_checksum, target_checksum, done_at, worker"
            " FROM zdtp.full_chunks WHERE run_id = %s ORDER BY chunk_no",
            (run_id,),
        ).fetchall()
    return {r[0]: r[1:] for r in rows}


def test_a_tampered_chunk_fails_with_its_range_and_commits_nothing(source_dsn: str, target_dsn: str) -> None:
    _source_table(source_dsn, rows=5_000)
    ensure_target_table(source_dsn=source_dsn, target_dsn=target_dsn, source="t")
    # (c) The target alters one row of chunk 2 ([1001, 1501)) as it is inserted.
    execute(
        target_dsn,
        "CREATE FUNCTION tamper() RETURNS trigger LANGUAGE plpgsql AS "
        "$$BEGIN NEW.v := 'tampered'; RETURN NEW; END$$; "
        "CREATE TRIGGER tamper BEFORE INSERT ON t FOR EACH ROW WHEN (NEW.id = 1234) "
        "EXECUTE FUNCTION tamper()",
    )
    spec = spec_dict(["t"], run_id="tamper", chunk_rows=500, verify="checksum")
    failed = run_worker(spec, source_dsn, target_dsn)
    assert failed.returncode == ExitCode.DATA_ERROR, failed.stderr
    message = failed.stderr + failed.stdout
    assert "table public.t chunk 2 keys [1001, 1501): data differs" in message, message
    # Nothing of chunk 2 committed (rows nor record); the chunks before it are kept.
    assert scalar(target_dsn, "SELECT count(*) FROM t WHERE id >= 1001 AND id < 1501") == 0
    assert scalar(target_dsn, "SELECT count(*) FROM t WHERE id < 1001") == 1000
    kept = _chunk_rows(target_dsn, "tamper")
    assert sorted(kept) == [0, 1]
    assert all(r[2] == r[3] and r[2] is not None for r in kept.values())
    # Verify of the failed run names the chunk that never committed.
    result = _verify(target_dsn, "tamper", "checksum")
    assert not result.ok and any("chunk 2 keys [1001, 1501)" in p for p in result.problems), result.problems
    # Fixed target, same run: the recorded chunks are skipped and keep their pair; verify passes.
    execute(target_dsn, "DROP TRIGGER tamper ON t")
    again = run_worker(spec, source_dsn, target_dsn)
    assert again.returncode == 0, again.stderr
    after = _chunk_rows(target_dsn, "tamper")
    assert {k: after[k] for k in kept} == kept and len(after) == 10
    result = _verify(target_dsn, "tamper", "checksum")
    assert result.ok, result.problems


def test_a_row_the_target_drops_fails_the_count_check(source_dsn: str, target_dsn: str) -> None:
    _source_table(source_dsn, rows=3_000)
    ensure_target_table(source_dsn=source_dsn, target_dsn=target_dsn, source="t")
    execute(
        target_dsn,
        "CREATE FUNCTION drop_row() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$; "
        "CREATE TRIGGER drop_row BEFORE INSERT ON t FOR EACH ROW WHEN (NEW.id = 2500) "
        "EXECUTE FUNCTION drop_row()",
    )
    failed = run_worker(
        spec_dict(["t"], run_id="cnt", chunk_rows=1_000, verify="count"), source_dsn, target_dsn
    )
    assert failed.returncode == ExitCode.DATA_ERROR, failed.stderr
    assert (
        "table public.t chunk 2 keys [2001, +inf): source sent 1000 rows, target stored 999" in failed.stderr
    )
    assert scalar(target_dsn, "SELECT count(*) FROM t WHERE id > 2000") == 0


def test_missing_record_or_later_change_fails_verify(source_dsn: str, target_dsn: str) -> None:
    _source_table(source_dsn, rows=4_000)
    _copy(source_dsn, target_dsn, "r", chunk_rows=500, verify="checksum")

    def check() -> Any:
        return _verify(target_dsn, "r", "checksum")

    assert check().ok
    # A changed target row after the copy: the table no longer matches its chunks.
    execute(target_dsn, "UPDATE t SET v = 'changed' WHERE id = 42")
    changed = check()
    assert not changed.ok and any("differs from its chunks'" in p for p in changed.problems), changed.problems
    execute(target_dsn, "UPDATE t SET v = 'v42' WHERE id = 42")
    assert check().ok
    # (d) A missing chunk record: verify names the chunk and its keys.
    execute(target_dsn, "DELETE FROM zdtp.full_chunks WHERE run_id = 'r' AND chunk_no = 3")
    missing = check()
    assert not missing.ok
    assert any("have no record: chunk 3 keys [1501, 2001)" in p for p in missing.problems), missing.problems
    # A run that never copied the table, and a level none that checks nothing.
    other = _verify(target_dsn, "nope", "count")
    assert any("recorded no chunk plan" in p for p in other.problems)
    assert verify_run(
        target_dsn="postgresql://nowhere.invalid/x", task="t1", run_id="r", tables=["t"], level="none"
    ).ok
    # Every verify is logged; the last one failed and says why.
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        log = conn.execute(
            "SELECT run_id, level, ok, detail FROM zdtp.verify_log WHERE task = 't1' ORDER BY verified_at"
        ).fetchall()
    assert [(r[0], r[2]) for r in log] == [
        ("r", True),
        ("r", False),
        ("r", True),
        ("r", False),
        ("nope", False),
    ]
    assert any("chunk 3" in p for p in log[3][3]["problems"])


def test_widened_target_columns_verify_equal(source_dsn: str, target_dsn: str) -> None:
    """int→bigint, varchar(10)→text, real→double, numeric(12,2)→numeric(14,4): the checksum reads
    the target back as the source's types, so the pairs match (and plain text forms would not)."""
    _source_table(source_dsn, rows=3_000)
    execute(
        target_dsn,
        "CREATE TABLE t (id bigint PRIMARY KEY, v text, n numeric(14,4), r double precision,"
        " c text, big text)",
    )
    _copy(source_dsn, target_dsn, "w", chunk_rows=1_000, verify="checksum")
    result = _verify(target_dsn, "w", "checksum")
    assert result.ok, result.problems
    # Without the casts the two sides print differently (1.50 vs 1.5000): the casts are needed.
    sql = f"SELECT checksum FROM ({checksum_sql('t', ['id', 'v', 'n', 'r', 'c', 'big'])}) s"
    assert scalar(source_dsn, sql) != scalar(target_dsn, sql), "widened columns print alike: proves nothing"


def test_an_old_state_schema_gets_the_new_columns(source_dsn: str, target_dsn: str) -> None:
    _source_table(source_dsn, rows=1_000)
    execute(
        target_dsn,
        "CREATE SCHEMA zdtp; CREATE TABLE zdtp.full_chunks (run_id text NOT NULL,"
        " target_table text NOT NULL, part text NOT NULL DEFAULT '', chunk_no integer NOT NULL,"
        " rows bigint NOT NULL, bytes bigint NOT NULL, checksum numeric, worker text NOT NULL,"
        " seconds real NOT NULL, done_at timestamptz NOT NULL DEFAULT now(),"
        " PRIMARY KEY (run_id, target_table, part, chunk_no));"
        " INSERT INTO zdtp.full_chunks (run_id, target_table, chunk_no, rows, bytes, worker, seconds)"
        " VALUES ('old', 'public.t', 0, 1, 1, 'w0', 0)",
    )
    _copy(source_dsn, target_dsn, "new", verify="checksum")
    assert _verify(target_dsn, "new", "checksum").ok
    assert scalar(target_dsn, "SELECT count(*) FROM zdtp.full_chunks WHERE source_checksum IS NULL") == 1


@pytest.mark.parametrize("mode", ["queue", "swap"])
def test_queue_and_swap_runs_verify_from_their_records(source_dsn: str, target_dsn: str, mode: str) -> None:
    """A queue run records one whole-table part (the planner's ranges are joined); a swap run
    writes a staging table that must have been swapped in."""
    _source_table(source_dsn, rows=6_000)
    execute(target_dsn, f"CREATE TABLE t ({COLUMNS})")
    execute(target_dsn, "INSERT INTO t SELECT g, 'old' FROM generate_series(1, 100) g")
    copy_mode = "swap" if mode == "swap" else "resume"
    spec = make_spec(["t"], run_id=mode, chunk_rows=1_000, verify="checksum", copy_mode=copy_mode)
    if mode == "queue":
        enqueue_chunks(spec, source_dsn=source_dsn, target_dsn=target_dsn, queue_name="q")
        run_full(spec, source_dsn=source_dsn, target_dsn=target_dsn, queue_name="q", queue_mode="drain")
    else:
        run_full(spec, source_dsn=source_dsn, target_dsn=target_dsn)
    result = _verify(target_dsn, mode, "checksum")
    assert result.ok, result.problems
    assert result.tables[0].live_rows == 6_000 and result.tables[0].recorded == 6
    if mode == "swap":  # a staging table not swapped in yet is named
        execute(target_dsn, "UPDATE zdtp.full_plans SET swapped_at = NULL")
        assert any("was not swapped in" in p for p in _verify(target_dsn, mode, "checksum").problems)
