"""CDC against real PostgreSQL: DML across tables, big transactions, TOAST, NULLs, truncate."""

from __future__ import annotations

import time

import psycopg
import pytest

from tests.integration.worker_cdc.helpers import InProcessWorker, make_spec, state, table_rows, wait_equal
from zdtp_worker.contract.errors import DataError
from zdtp_worker.incremental import health, replication
from zdtp_worker.incremental.loop import ChangeLoop

pytestmark = pytest.mark.postgres

DDL = """
CREATE TABLE a (id int PRIMARY KEY, name text, amount numeric(12,2), at timestamptz, tags text[], doc jsonb);
CREATE TABLE b (k1 text, k2 int, big text, n int, PRIMARY KEY (k1, k2));
"""


def test_dml_across_tables_reaches_target(source_dsn: str, target_dsn: str) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute(DDL)
    spec = make_spec(["public.a", "public.b"])
    worker = InProcessWorker(spec, source_dsn, target_dsn).start().wait_streaming()
    try:
        with psycopg.connect(source_dsn, autocommit=True) as src:
            src.execute(
                "INSERT INTO a SELECT g, 'n' || g, g * 1.5, now(), ARRAY['x', E'tab\\there'], '{\"k\": 1}'"
                " FROM generate_series(1, 100) g"
            )
            src.execute("INSERT INTO a VALUES (1000, E'line\\nbreak \\\\ back', NULL, NULL, NULL, NULL)")
            src.execute("UPDATE a SET name = 'updated' WHERE id <= 10")
            src.execute("DELETE FROM a WHERE id BETWEEN 11 AND 20")
            src.execute("UPDATE a SET id = id + 5000 WHERE id BETWEEN 21 AND 25")  # key change
            with src.transaction():
                src.execute("INSERT INTO b SELECT 'k' || g, g, NULL, g FROM generate_series(1, 50) g")
                src.execute("UPDATE b SET n = n * 2 WHERE k2 % 2 = 0")
                src.execute("DELETE FROM b WHERE k2 > 45")
                src.execute("INSERT INTO b VALUES ('k46', 46, 'again', 0)")
        wait_equal(source_dsn, target_dsn, ["a", "b"], worker=worker)
        assert worker.metrics is not None and worker.metrics.changes_applied > 0
    finally:
        worker.stop()
    assert state(target_dsn)[0][3] > 0


def test_large_transaction_toast_nulls_and_truncate(source_dsn: str, target_dsn: str) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute("CREATE TABLE big (id bigint PRIMARY KEY, v int, note text, blob text)")
        src.execute("CREATE TABLE other (id int PRIMARY KEY, v text)")
    spec = make_spec(["big", "other"], batch_max_changes=5000)
    worker = InProcessWorker(spec, source_dsn, target_dsn).start().wait_streaming()
    try:
        with psycopg.connect(source_dsn, autocommit=True) as src:
            # One 100k-row transaction: flushed in pieces into one target transaction.
            src.execute(
                "INSERT INTO big SELECT g, g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' END, NULL"
                " FROM generate_series(1, 100000) g"
            )
            # TOASTed values (incompressible, > 2 kB), then updates that leave them unchanged.
            src.execute(
                "UPDATE big SET blob = (SELECT string_agg(md5(random()::text), '') FROM"
                " generate_series(1, 200)) WHERE id <= 20"
            )
            src.execute("UPDATE big SET v = -v WHERE id <= 30")  # blob unchanged (TOAST 'u')
            src.execute("UPDATE big SET id = id + 1000000 WHERE id BETWEEN 1 AND 3")  # key move + TOAST
            with src.transaction():
                src.execute("UPDATE big SET note = 'same-txn' WHERE id = 10")
                src.execute("UPDATE big SET v = 7 WHERE id = 10")  # merged with the previous in one batch
            src.execute("INSERT INTO other SELECT g, 'x' FROM generate_series(1, 10) g")
            with src.transaction():
                src.execute("INSERT INTO other VALUES (11, 'before truncate')")
                src.execute("TRUNCATE other")
                src.execute("INSERT INTO other VALUES (12, 'after truncate')")
        wait_equal(source_dsn, target_dsn, ["big", "other"], worker=worker, timeout=120)
        rows = table_rows(target_dsn, "big", "id, length(blob)", "1")
        assert rows is not None
        assert sum(1 for _, n in rows if n == 6400) == 20
    finally:
        worker.stop()


def test_restart_resumes_without_reapplying(
    source_dsn: str, target_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute("CREATE TABLE c (id int PRIMARY KEY, n int NOT NULL)")
    with psycopg.connect(target_dsn, autocommit=True) as tgt:
        # The target audits every write: a re-applied change would show up twice.
        tgt.execute("CREATE TABLE c (id int PRIMARY KEY, n int NOT NULL)")
        tgt.execute("CREATE TABLE audit (id int, n int)")
        tgt.execute(
            "CREATE FUNCTION audit_c() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN INSERT INTO audit VALUES (NEW.id, NEW.n); RETURN NEW; END$$"
        )
        tgt.execute(
            "CREATE TRIGGER c_audit AFTER INSERT OR UPDATE ON c FOR EACH ROW EXECUTE FUNCTION audit_c()"
        )
    spec = make_spec(["c"])
    skipped = []
    for round_ in range(3):
        monkeypatch.undo()
        if round_ == 0:
            # Never confirm to the slot: the next start replays everything already applied...
            monkeypatch.setattr(ChangeLoop, "_feedback", lambda self, cur, lsn: None)
        if round_ == 1:
            # ... when it asks for the slot's position instead of the one stored on the target.
            original = replication.start_replication
            monkeypatch.setattr(
                replication,
                "start_replication",
                lambda cur, _f=original, **kw: _f(cur, **{**kw, "start_lsn": 0}),
            )
        worker = InProcessWorker(spec, source_dsn, target_dsn).start().wait_streaming()
        with psycopg.connect(source_dsn, autocommit=True) as src:
            src.execute(
                "INSERT INTO c SELECT g, 0 FROM generate_series(%s::int, %s::int) g",
                (round_ * 10, round_ * 10 + 9),
            )
            for _ in range(3):
                src.execute("UPDATE c SET n = n + 1")
        wait_equal(source_dsn, target_dsn, ["c"], worker=worker)
        worker.stop()
        assert worker.metrics is not None
        skipped.append(worker.metrics.transactions_skipped)
    assert skipped[0] == 0 and skipped[1] >= 4  # round 1 skipped round 0's replayed transactions
    with psycopg.connect(target_dsn) as tgt:
        dupes = tgt.execute("SELECT id, n, count(*) FROM audit GROUP BY 1, 2 HAVING count(*) > 1").fetchall()
    assert dupes == []


def test_added_column_is_added_on_target(source_dsn: str, target_dsn: str) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute("CREATE TABLE s (id int PRIMARY KEY, v text)")
    spec = make_spec(["s"])
    worker = InProcessWorker(spec, source_dsn, target_dsn).start().wait_streaming()
    try:
        with psycopg.connect(source_dsn, autocommit=True) as src:
            src.execute("INSERT INTO s VALUES (1, 'a')")
            src.execute("ALTER TABLE s ADD COLUMN extra numeric(10,3) DEFAULT 1.5")
            src.execute("INSERT INTO s VALUES (2, 'b', 2.25)")
            src.execute("UPDATE s SET v = 'c' WHERE id = 1")
        wait_equal(source_dsn, target_dsn, ["s"], worker=worker)
        assert worker.metrics is not None and worker.metrics.schema_changes == 1
    finally:
        worker.stop()


@pytest.mark.parametrize(
    "change",
    [
        "ALTER TABLE s ALTER COLUMN v TYPE int USING length(v)",
        "ALTER TABLE s DROP CONSTRAINT s_pkey",
    ],
    ids=["type-change", "dropped-pk"],
)
def test_incompatible_schema_change_stops_with_65(source_dsn: str, target_dsn: str, change: str) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute("CREATE TABLE s (id int PRIMARY KEY, v text)")
    spec = make_spec(["s"])
    worker = InProcessWorker(spec, source_dsn, target_dsn).start().wait_streaming()
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute("INSERT INTO s VALUES (1, 'a')")
        wait_equal(source_dsn, target_dsn, ["s"], worker=worker)
        src.execute(change)
        src.execute("INSERT INTO s VALUES (2, '22')")
    assert worker.thread is not None
    worker.thread.join(30)
    assert isinstance(worker.error, DataError), worker.error
    assert "incompatible schema change" in str(worker.error)
    assert worker.error.exit_code == 65
    # Nothing of the incompatible change reached the target.
    assert table_rows(target_dsn, "s", "id, v::text") == [(1, "a")]


def test_liveness_holds_while_draining_a_backlog(
    source_dsn: str, target_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream that is never idle still beats: /healthz must not restart a pod that is catching up."""
    monkeypatch.setattr(health, "HEARTBEAT_STALE_SECONDS", 1.0)
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute("CREATE TABLE q (id int PRIMARY KEY, v int)")
    spec = make_spec(["q"], batch_max_changes=2000)
    InProcessWorker(spec, source_dsn, target_dsn).start().wait_streaming().stop()
    with psycopg.connect(source_dsn, autocommit=True) as src:
        for start in range(0, 150_000, 1000):  # backlog while no worker runs
            src.execute(
                "INSERT INTO q SELECT g, g FROM generate_series(%s::int, %s::int) g", (start, start + 999)
            )
    worker = InProcessWorker(spec, source_dsn, target_dsn).start().wait_streaming()
    unhealthy = []
    try:
        assert worker.metrics is not None
        while worker.metrics.changes_applied < 150_000:
            worker.check()
            ok, why = worker.metrics.healthy()
            if not ok:
                unhealthy.append(why)
            time.sleep(0.05)
    finally:
        worker.stop()
    assert unhealthy == []


def test_insert_of_a_key_already_on_the_target_falls_back_to_upsert(source_dsn: str, target_dsn: str) -> None:
    """Inserted keys are COPYed straight into the target; a clash (row loaded outside the stream)
    rolls back that COPY to a savepoint and upserts instead."""
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute("CREATE TABLE p (id int PRIMARY KEY, v text)")
    with psycopg.connect(target_dsn, autocommit=True) as tgt:
        tgt.execute("CREATE TABLE p (id int PRIMARY KEY, v text)")
        tgt.execute("INSERT INTO p VALUES (5, 'stale')")
    worker = InProcessWorker(make_spec(["p"]), source_dsn, target_dsn).start().wait_streaming()
    try:
        with psycopg.connect(source_dsn, autocommit=True) as src:
            src.execute("INSERT INTO p SELECT g, 'fresh' FROM generate_series(1, 10) g")
            src.execute("INSERT INTO p VALUES (11, 'direct')")
        wait_equal(source_dsn, target_dsn, ["p"], worker=worker)
    finally:
        worker.stop()
