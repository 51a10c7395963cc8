"""Swap mode never shows readers an empty or partial table; the work queue hands every chunk to
exactly one worker."""

from __future__ import annotations

import subprocess
import sys
import threading

import psycopg
import pytest

from tests.integration.worker_full.helpers import (
    REPO,
    execute,
    fingerprint,
    make_spec,
    scalar,
    spec_dict,
    worker_env,
)
from zdtp_worker.full import enqueue_chunks, run_full

pytestmark = pytest.mark.postgres


def test_swap_readers_never_see_partial_table(source_dsn: str, target_dsn: str) -> None:
    execute(source_dsn, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    execute(source_dsn, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 200000) g")
    execute(target_dsn, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    execute(target_dsn, "INSERT INTO t SELECT g, 'old' FROM generate_series(1, 50000) g")
    seen: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        with psycopg.connect(target_dsn, autocommit=True) as conn:
            while not stop.is_set():
                try:
                    seen.append(conn.execute("SELECT count(*) FROM t").fetchone()[0])  # type: ignore[index]
                except psycopg.Error as exc:  # pragma: no cover - a failure is the finding
                    errors.append(str(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        result = run_full(
            make_spec(["t"], copy_mode="swap", chunk_rows=20000), source_dsn=source_dsn, target_dsn=target_dsn
        )
    finally:
        stop.set()
        thread.join()
    assert result.chunks >= 10
    assert not errors
    assert set(seen) <= {50000, 200000}, sorted(set(seen))
    assert seen.count(50000) > 5 and seen[-1] == 200000
    assert fingerprint(source_dsn, "t") == fingerprint(target_dsn, "t")
    # The staging table is gone, the PK kept its usual name, and a rerun changes nothing.
    assert scalar(target_dsn, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 't__zdtp_%'") == 0
    assert (
        scalar(
            target_dsn, "SELECT conname FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'p'"
        )
        == "t_pkey"
    )
    again = run_full(make_spec(["t"], copy_mode="swap"), source_dsn=source_dsn, target_dsn=target_dsn)
    assert again.rows == 0


def _queue_spec(**full: object) -> dict:
    spec = spec_dict(["t"], run_id="q-run", **full)
    spec["tables"] = []
    return spec


def test_queue_one_item_then_drain_with_three_workers(source_dsn: str, target_dsn: str) -> None:
    execute(source_dsn, "CREATE TABLE t (id uuid PRIMARY KEY, v int)")
    execute(source_dsn, "INSERT INTO t SELECT md5(g::text)::uuid, g FROM generate_series(1, 30000) g")
    spec = make_spec(["t"], run_id="q-run", chunk_rows=1000, queue="chunks")
    added = enqueue_chunks(spec, source_dsn=source_dsn, target_dsn=target_dsn)
    assert added == 30
    assert enqueue_chunks(spec, source_dsn=source_dsn, target_dsn=target_dsn) == 0  # idempotent

    one = run_full(
        make_spec(["t"], run_id="q-run"),
        source_dsn=source_dsn,
        target_dsn=target_dsn,
        queue_name="chunks",
        queue_mode="one",
    )
    assert one.chunks == 1 and one.rows == 1000

    env = worker_env(_queue_spec(progress_interval_seconds=30), source_dsn, target_dsn)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "zdtp_worker", "full", "--queue", "chunks"],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-500:] for o in outputs]
    starts = sum(o[1].count('"event": "chunk_start"') for o in outputs)
    assert starts == 29  # every remaining chunk copied exactly once
    assert scalar(target_dsn, "SELECT count(*) FROM zdtp.full_chunks WHERE run_id = 'q-run'") == 30
    assert scalar(target_dsn, "SELECT count(*) FROM zdtp.work_queue WHERE state <> 'done'") == 0
    assert fingerprint(source_dsn, "t") == fingerprint(target_dsn, "t")


def test_queue_run_moves_sequences_and_a_redone_item_adds_no_rows(source_dsn: str, target_dsn: str) -> None:
    # Queue workers do not know which item is a table's last: each chunk moves the sequences.
    execute(
        source_dsn,
        """
        CREATE TABLE s (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n serial, v int);
        INSERT INTO s (v) SELECT g FROM generate_series(1, 3000) g;
        SELECT setval('s_n_seq', 5000);  -- sequences ahead of the rows (ids used, rows deleted)
        """,
    )
    spec = make_spec(["s"], run_id="q-seq", chunk_rows=1000, queue="seq")
    assert enqueue_chunks(spec, source_dsn=source_dsn, target_dsn=target_dsn) == 3
    one = run_full(spec, source_dsn=source_dsn, target_dsn=target_dsn, queue_name="seq", queue_mode="one")
    assert one.chunks == 1
    # Already after one item the target hands out no id the source used.
    assert scalar(target_dsn, "SELECT last_value FROM s_n_seq") == 5000
    assert scalar(target_dsn, "SELECT last_value FROM s_id_seq") == 3000
    # A finished item put back (as if its lease had expired after commit): the chunk sees its
    # checkpoint and copies nothing again.
    execute(target_dsn, "UPDATE zdtp.work_queue SET state = 'ready' WHERE queue = 'seq' AND state = 'done'")
    drained = run_full(
        spec, source_dsn=source_dsn, target_dsn=target_dsn, queue_name="seq", queue_mode="drain"
    )
    assert drained.rows == 2000, drained
    assert scalar(target_dsn, "SELECT count(*) - count(DISTINCT id) FROM s") == 0
    assert fingerprint(source_dsn, "s") == fingerprint(target_dsn, "s")
    execute(target_dsn, "INSERT INTO s (v) VALUES (0)")  # the cut-over case: new ids do not collide
    assert scalar(target_dsn, "SELECT max(n) FROM s") == 5001


def test_swap_keeps_the_targets_inheritance_links(source_dsn: str, target_dsn: str) -> None:
    # The target table has a parent and a child (plain INHERITS). DROP TABLE of the old table
    # refused while the child inherits from it; the links are made again on the swapped-in table.
    execute(source_dsn, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    execute(source_dsn, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 3000) g")
    execute(target_dsn, "CREATE TABLE p (id int, v text)")
    execute(target_dsn, "CREATE TABLE t (id int PRIMARY KEY, v text CHECK (v <> '')) INHERITS (p)")
    execute(target_dsn, "INSERT INTO t SELECT g, 'old' FROM generate_series(1, 10) g")
    execute(target_dsn, "CREATE TABLE t_kid (k int) INHERITS (t)")
    execute(target_dsn, "INSERT INTO t_kid VALUES (900001, 'kid', 1), (900002, 'kid', 2)")
    result = run_full(
        make_spec(["t"], copy_mode="swap", chunk_rows=700), source_dsn=source_dsn, target_dsn=target_dsn
    )
    assert result.rows == 3000
    rows = "SELECT id, v FROM ONLY t ORDER BY id"
    with psycopg.connect(source_dsn) as src, psycopg.connect(target_dsn) as tgt:
        assert src.execute(rows).fetchall() == tgt.execute(rows).fetchall()
    links = "SELECT inhrelid::regclass::text, inhparent::regclass::text FROM pg_inherits ORDER BY 1"
    with psycopg.connect(target_dsn) as conn:
        assert conn.execute(links).fetchall() == [("t", "p"), ("t_kid", "t")]
        # Through the links: the parent reads the new rows and the child's, the child its own.
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (3002,)
        assert conn.execute("SELECT count(*) FROM p").fetchone() == (3002,)
        assert conn.execute("SELECT count(*) FROM t_kid").fetchone() == (2,)


def test_queue_run_makes_the_inheritance_links(source_dsn: str, target_dsn: str) -> None:
    # INHERITS between tables of a queue run: the enqueue step creates the tables and links them
    # (no queue worker knows it copies a table's last item); every row lands once, the parents
    # read their children's rows as on the source.
    execute(
        source_dsn,
        """
        CREATE TABLE city (id int PRIMARY KEY, name text NOT NULL);
        CREATE TABLE capital (state char(2) NOT NULL) INHERITS (city);
        ALTER TABLE capital ADD PRIMARY KEY (id);
        CREATE TABLE tagged (tag text);
        CREATE TABLE town (id int PRIMARY KEY) INHERITS (city, tagged);
        INSERT INTO city SELECT g, 'c' || g FROM generate_series(1, 2500) g;
        INSERT INTO capital SELECT g, 'cap' || g, 'S' FROM generate_series(5001, 5300) g;
        INSERT INTO town SELECT g, 't' || g, 'x' FROM generate_series(7001, 7400) g;
        INSERT INTO tagged VALUES ('lonely');
        """,
    )
    tables = ["city", "capital", "tagged", "town"]
    specs = [t if t != "tagged" else {"source": t, "allow_single_chunk": True} for t in tables]
    spec = make_spec(specs, run_id="q-inh", chunk_rows=500, queue="inh")
    assert enqueue_chunks(spec, source_dsn=source_dsn, target_dsn=target_dsn) > len(tables)
    run_full(
        make_spec(specs, run_id="q-inh"),
        source_dsn=source_dsn,
        target_dsn=target_dsn,
        queue_name="inh",
        queue_mode="drain",
    )
    links = (
        "SELECT inhrelid::regclass::text, inhparent::regclass::text, inhseqno FROM pg_inherits ORDER BY 1, 3"
    )
    counts = (
        "SELECT (SELECT count(*) FROM city), (SELECT count(*) FROM ONLY city), (SELECT count(*) FROM tagged)"
    )
    with psycopg.connect(source_dsn) as src, psycopg.connect(target_dsn) as tgt:
        assert tgt.execute(links).fetchall() == src.execute(links).fetchall()
        assert tgt.execute(counts).fetchall() == src.execute(counts).fetchall() == [(3200, 2500, 401)]
    for table in tables:
        assert fingerprint(source_dsn, table) == fingerprint(target_dsn, table)
