"""Held-out stream workloads, round 4: shapes of PostgreSQL's own logical replication regression
suite (src/test/subscription/t/: 001_rep_changes, 006_rewrite, 010_truncate, 013_partition,
015/016 streaming and subtransactions, 100_bugs) the zoo and the earlier rounds do not make.

Same steps as :mod:`.test_held_out_stream`: a fresh source database (PostgreSQL 18 and 15), the
planner's three full workers, one ``zdtp-worker incremental`` process, the workload, then the
per-row digest of every column, which waits until the stream has caught up (or the stream stops
with a data error naming the table, never a silent difference).
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.integration.schema_zoo import held_out as ho
from tests.integration.schema_zoo.test_held_out_stream import _stream
from tests.integration.worker_cdc.helpers import wait_until
from zdtp_worker.incremental.source_watch import SourceWatch

WATCH_SECONDS = SourceWatch.interval + 5

# A table keyed by id with a second unique column and a TOASTed column (REPLICA IDENTITY
# DEFAULT), and one whose replica identity is a unique index other than its primary key.
KEYS_SQL = """
CREATE SCHEMA ho;
CREATE TABLE ho.acct (id int PRIMARY KEY, email text NOT NULL UNIQUE, n int, doc text);
ALTER TABLE ho.acct ALTER COLUMN doc SET STORAGE EXTERNAL;  -- out of line even when compressible
INSERT INTO ho.acct SELECT i, 'u' || i || '@x', i, repeat(md5(i::text), 100) FROM generate_series(1, 400) i;
CREATE TABLE ho.dev (id int PRIMARY KEY, code text NOT NULL, n int, blob text);
CREATE UNIQUE INDEX dev_code ON ho.dev (code);
ALTER TABLE ho.dev REPLICA IDENTITY USING INDEX dev_code;
ALTER TABLE ho.dev ALTER COLUMN blob SET STORAGE EXTERNAL;
INSERT INTO ho.dev SELECT i, 'd' || i, i, repeat(md5((-i)::text), 100) FROM generate_series(1, 400) i;
ANALYZE;
"""


def test_key_chains_unique_swaps_and_unchanged_toast(
    empty_source: str, target_dsn: str, tmp_path: Path
) -> None:
    # 001_rep_changes / 100_bugs shapes: a key changed twice in one transaction (a -> b -> c), two
    # rows swapping their keys and their other unique values through a placeholder (the net
    # change swaps values a target applying it in one statement would see collide), key changes
    # that leave TOASTed columns unchanged (REPLICA IDENTITY DEFAULT and USING INDEX), and the
    # replica identity changed while streaming.
    ho.run_sql(empty_source, KEYS_SQL)
    _stream(
        empty_source,
        target_dsn,
        tmp_path,
        # a -> b -> c in one transaction, TOASTed doc unchanged
        "BEGIN; UPDATE ho.acct SET id = 10001 WHERE id = 1; UPDATE ho.acct SET id = 10002 WHERE id = 10001;"
        " COMMIT",
        # swap two rows' keys through a placeholder
        "BEGIN; UPDATE ho.acct SET id = -2 WHERE id = 2; UPDATE ho.acct SET id = 2 WHERE id = 3;"
        " UPDATE ho.acct SET id = 3 WHERE id = -2; COMMIT",
        # swap two rows' other unique value through a placeholder
        "BEGIN; UPDATE ho.acct SET email = 'tmp' WHERE id = 10; UPDATE ho.acct SET email = 'u10@x'"
        " WHERE id = 11; UPDATE ho.acct SET email = 'u11@x' WHERE id = 10; COMMIT",
        # shift a block of keys up by one (each row takes its neighbour's old key)
        "BEGIN; UPDATE ho.acct SET id = 500 WHERE id = 100;"
        " DO $$ BEGIN FOR i IN REVERSE 99..50 LOOP UPDATE ho.acct SET id = i + 1 WHERE id = i; END LOOP;"
        " END $$;"
        " COMMIT",
        "UPDATE ho.acct SET n = n + 1 WHERE id % 5 = 0",  # doc unchanged: partial rows
        # USING INDEX: the identity (code) changes; TOASTed blob unchanged
        "UPDATE ho.dev SET code = code || 'x' WHERE id % 9 = 0",
        "BEGIN; UPDATE ho.dev SET code = 'tmp' WHERE id = 20; UPDATE ho.dev SET code = 'd20' WHERE id = 21;"
        " UPDATE ho.dev SET code = 'd21' WHERE id = 20; COMMIT",
        # the primary key (not the identity) swapped between two rows
        "BEGIN; UPDATE ho.dev SET id = -30 WHERE id = 30; UPDATE ho.dev SET id = 30 WHERE id = 31;"
        " UPDATE ho.dev SET id = 31 WHERE id = -30; COMMIT",
        # identity switched while streaming: dev to its primary key, acct to FULL
        "ALTER TABLE ho.dev REPLICA IDENTITY DEFAULT",
        "UPDATE ho.dev SET id = id + 1000, n = 0 WHERE id % 7 = 0",
        "DELETE FROM ho.dev WHERE id % 11 = 0",
        "ALTER TABLE ho.acct REPLICA IDENTITY FULL",
        "UPDATE ho.acct SET email = email || '.full' WHERE id % 6 = 0",
        "DELETE FROM ho.acct WHERE id % 13 = 0",
    )


BIG_SQL = """
CREATE SCHEMA ho;
CREATE TABLE ho.ev (id bigint PRIMARY KEY, kind text, payload text);
INSERT INTO ho.ev SELECT i, 'k' || i % 10, md5(i::text) FROM generate_series(1, 1000) i;
CREATE TABLE ho.parent (id int PRIMARY KEY, v text);
CREATE TABLE ho.child (extra int) INHERITS (ho.parent);
ALTER TABLE ho.child ADD PRIMARY KEY (id);
INSERT INTO ho.parent SELECT i, 'p' FROM generate_series(1, 50) i;
INSERT INTO ho.child SELECT i, 'c', i FROM generate_series(1, 50) i;
CREATE TABLE ho.clus (id int PRIMARY KEY, v text);
INSERT INTO ho.clus SELECT i, md5(i::text) FROM generate_series(1, 2000) i;
CREATE SCHEMA other;
CREATE TABLE other.t (id int PRIMARY KEY, v text);
ANALYZE;
"""


def test_large_transaction_with_rolled_back_savepoints_and_rewrites(
    empty_source: str, target_dsn: str, tmp_path: Path
) -> None:
    # 015/016/018: a transaction well past the worker's batch size and the walsender's
    # logical_decoding_work_mem (set to its minimum) with subtransactions rolled
    # back (their rows must not appear), released and nested; tables outside the task written in
    # the same transaction; 006_rewrite: VACUUM FULL, CLUSTER and a rewriting ALTER TYPE while
    # streaming (the widening followed on the target); 010_truncate: TRUNCATE of several tables in
    # one statement, with ONLY.
    ho.run_sql(empty_source, BIG_SQL)
    # The walsender (a session of this database) spills every transaction past 64 kB to disk,
    # subtransactions included, and restores them at commit.
    dbname = ho.rows(empty_source, "SELECT current_database()")[0][0]
    ho.run_sql(empty_source, f"ALTER DATABASE {dbname} SET logical_decoding_work_mem = '64kB'")
    stream = ho.Stream(empty_source, target_dsn, tmp_path)
    try:
        ho.run_sql(
            empty_source,
            """
            BEGIN;
            INSERT INTO ho.ev SELECT i, 'big', repeat('x', 50) FROM generate_series(10001, 40000) i;
            SAVEPOINT a;
            INSERT INTO ho.ev SELECT i, 'rolled back', 'x' FROM generate_series(40001, 60000) i;
            UPDATE ho.ev SET kind = 'rolled back' WHERE id <= 500;
            ROLLBACK TO SAVEPOINT a;
            SAVEPOINT b;
            UPDATE ho.ev SET kind = 'kept' WHERE id BETWEEN 10001 AND 20000;
            SAVEPOINT c;
            DELETE FROM ho.ev WHERE id BETWEEN 20001 AND 25000;
            ROLLBACK TO SAVEPOINT c;
            DELETE FROM ho.ev WHERE id BETWEEN 25001 AND 26000;
            RELEASE SAVEPOINT b;
            INSERT INTO other.t SELECT i, 'outside' FROM generate_series(1, 1000) i;
            UPDATE ho.ev SET payload = 'after' WHERE id % 100 = 0;
            COMMIT;
            """,
            "VACUUM FULL ho.ev",
            "UPDATE ho.ev SET kind = 'post-vacuum' WHERE id % 7 = 0",
            "CLUSTER ho.clus USING clus_pkey",
            "DELETE FROM ho.clus WHERE id % 3 = 0",
            "ALTER TABLE ho.clus ALTER COLUMN id TYPE bigint",  # a rewriting widening of the key
            "UPDATE ho.clus SET v = 'after alter' WHERE id % 5 = 0",
            "TRUNCATE ONLY ho.parent, ho.clus",
            "INSERT INTO ho.parent VALUES (1, 'back')",
            "INSERT INTO ho.clus VALUES (1, 'back')",
            "BEGIN; INSERT INTO ho.ev VALUES (1000001, 'last', 'x'); INSERT INTO other.t VALUES (-1, 'o');"
            " COMMIT",
        )
        stream.wait_same()
        spilled = ho.rows(
            empty_source,
            "SELECT spill_txns FROM pg_stat_replication_slots WHERE slot_name = %s",
            (stream.names["slot"],),
        )
    finally:
        code = stream.stop()
    assert code == 0, stream.proc.log_tail()
    assert spilled and spilled[0][0] > 0, spilled  # the walsender did spill


PARTS_SQL = """
CREATE SCHEMA ho;
CREATE TABLE ho.p (id int NOT NULL, at date NOT NULL, v text, PRIMARY KEY (id, at))
    PARTITION BY RANGE (at);
CREATE TABLE ho.p_2024 PARTITION OF ho.p FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE ho.p_2025 PARTITION OF ho.p FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE ho.p_rest PARTITION OF ho.p DEFAULT;
CREATE TABLE ho.p_2030 PARTITION OF ho.p FOR VALUES FROM ('2030-01-01') TO ('2031-01-01');  -- empty
INSERT INTO ho.p SELECT i, date '2024-01-01' + (i % 900), 'v' || i FROM generate_series(1, 3000) i;
CREATE TABLE ho.q (id int PRIMARY KEY, v text);
INSERT INTO ho.q SELECT i, 'q' FROM generate_series(1, 100) i;
ANALYZE;
"""


def test_partition_rewrites_and_moves_stream(empty_source: str, target_dsn: str, tmp_path: Path) -> None:
    # 013_partition: rows moved between partitions by UPDATE, a whole partitioned table rewritten
    # (VACUUM FULL, also of an empty partition; CLUSTER of one partition), TRUNCATE of the
    # partitioned table with another. Rewritten partitions get new files like a truncated one:
    # the stream must still be running after the source watch has looked at them.
    ho.run_sql(empty_source, PARTS_SQL)
    stream = ho.Stream(empty_source, target_dsn, tmp_path)
    try:
        ho.run_sql(
            empty_source,
            "UPDATE ho.p SET at = at + 365 WHERE id % 10 = 0",  # 2024 -> 2025, 2025 -> rest
            "VACUUM FULL ho.p",
            "CLUSTER ho.p_2024 USING p_2024_pkey",
            "UPDATE ho.p SET v = 'after rewrite' WHERE id % 3 = 0",
            "BEGIN; UPDATE ho.p SET id = id + 100000 WHERE id % 17 = 0; DELETE FROM ho.p WHERE id % 19 = 0;"
            " COMMIT",
            # Rewrites every partition with every row's xmin new, like a TRUNCATE and a reload:
            # the key comparison, not the xmin shortcut, must tell them apart.
            "ALTER TABLE ho.p ALTER COLUMN id TYPE bigint",
            "UPDATE ho.p SET v = 'after widening' WHERE id % 50 = 0",  # the target follows on a change
        )
        stream.wait_same()
        time.sleep(WATCH_SECONDS)  # the watch's next look at the partitions' files
        ho.run_sql(
            empty_source,
            "TRUNCATE ho.p, ho.q",
            "INSERT INTO ho.p SELECT i, date '2025-06-01', 'again' FROM generate_series(1, 50) i",
        )
        stream.wait_same()
    finally:
        code = stream.stop()
    assert code == 0, stream.proc.log_tail()


def test_truncating_one_partition_while_streaming_stops_the_stream(
    empty_source: str, target_dsn: str, tmp_path: Path
) -> None:
    # 013_partition: TRUNCATE of one partition. PostgreSQL leaves it out of the logical stream
    # when publishing via the partition root (zdtp's publications do), so the target would keep
    # the partition's rows for good; the source watch finds the partition's new file, compares its
    # keys with the target and stops the stream naming it (before: a silent difference).
    ho.run_sql(empty_source, PARTS_SQL)
    stream = ho.Stream(empty_source, target_dsn, tmp_path)
    try:
        ho.run_sql(
            empty_source,
            "TRUNCATE ho.p_2024",
            "INSERT INTO ho.p SELECT i, date '2024-02-01', 'after' FROM generate_series(1, 20) i",
        )
        code = stream.proc.wait_exit(timeout=ho.STREAM_TIMEOUT)
    finally:
        stream.stop()
    log = stream.proc.log_tail()
    assert code == 65, log
    assert "ho.p_2024" in log and "TRUNCATE" in log, log


NUMERIC_SQL = """
CREATE SCHEMA ho;
CREATE TABLE ho.price (id int PRIMARY KEY, amount numeric, at timestamp, note text);
INSERT INTO ho.price SELECT i, i / 7.0, timestamp '2024-01-01 00:00:00.123456' + i * interval '1.5 s', 'n'
FROM generate_series(1, 500) i;
ANALYZE;
"""
# The source rewrites every row with rounded values; no row change is in the WAL.
NARROWING = [
    "ALTER TABLE ho.price ALTER COLUMN amount TYPE numeric(12,2), ALTER COLUMN at TYPE timestamp(0)",
    "UPDATE ho.price SET note = 'after' WHERE id % 10 = 0",
]


def test_narrowing_type_change_while_streaming_is_copied_when_opted_in(
    empty_source: str, target_dsn: str, tmp_path: Path
) -> None:
    # 006_rewrite's shape with a change of values: numeric -> numeric(12,2) and timestamp ->
    # timestamp(0) round every row on the source. Opted in, the target takes the type and the
    # source's values; the digest compares both.
    ho.run_sql(empty_source, NUMERIC_SQL)
    stream = ho.Stream(empty_source, target_dsn, tmp_path)
    stream.stop()  # the sync YAML has no such option: the worker spec's, as an operator sets it
    spec = stream.proc.spec
    opted = spec.incremental.model_copy(update={"allow_lossy_type_changes": True})
    stream.proc.spec = spec.model_copy(update={"incremental": opted})
    stream.proc.start()
    try:
        # This process streaming (the state row is the first one's): a narrowing while no worker
        # runs is the start-up's baseline, not seen as a change (docs/cdc-safety.md).
        wait_until(
            lambda: stream.proc.check_alive() or stream.proc.log.read_text().count("streaming slot") >= 2,
            timeout=120,
            what="the restarted worker to stream",
        )
        ho.run_sql(empty_source, *NARROWING)
        stream.wait_same()
    finally:
        code = stream.stop()
    assert code == 0, stream.proc.log_tail()


def test_narrowing_type_change_while_streaming_stops_the_stream(
    empty_source: str, target_dsn: str, tmp_path: Path
) -> None:
    # Not opted in: exit 65 naming the column and both types, instead of keeping the target's
    # unrounded values (what the stream did before: it took the narrower type for a replay of
    # changes from before a widening).
    ho.run_sql(empty_source, NUMERIC_SQL)
    stream = ho.Stream(empty_source, target_dsn, tmp_path)
    try:
        ho.run_sql(empty_source, *NARROWING)
        code = stream.proc.wait_exit(timeout=ho.STREAM_TIMEOUT)
    finally:
        stream.stop()
    log = stream.proc.log_tail()
    assert code == 65, log
    assert "amount" in log and "numeric(12,2)" in log and "allow_lossy_type_changes" in log, log


SHAPES_SQL = """
CREATE SCHEMA ho;
CREATE TABLE ho.booking (id int PRIMARY KEY, during int4range NOT NULL, note text,
                         EXCLUDE USING gist (during WITH &&));
ALTER TABLE ho.booking ALTER COLUMN note SET STORAGE EXTERNAL;
INSERT INTO ho.booking SELECT i, int4range(i * 10, i * 10 + 10), repeat(md5(i::text), 80)
FROM generate_series(1, 200) i;
CREATE TABLE ho.pt (id int NOT NULL, at date NOT NULL, doc text, PRIMARY KEY (id, at))
    PARTITION BY RANGE (at);
CREATE TABLE ho.pt_a PARTITION OF ho.pt FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE ho.pt_b PARTITION OF ho.pt FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
ALTER TABLE ho.pt_a ALTER COLUMN doc SET STORAGE EXTERNAL;
ALTER TABLE ho.pt_b ALTER COLUMN doc SET STORAGE EXTERNAL;
INSERT INTO ho.pt SELECT i, date '2024-03-01' + i % 200, repeat(md5(i::text), 80)
FROM generate_series(1, 300) i;
CREATE TABLE ho.q (id int PRIMARY KEY, v text);
INSERT INTO ho.q SELECT i, 'q' FROM generate_series(1, 100) i;
ANALYZE;
"""


def test_exclusion_swaps_partition_moves_with_toast_and_truncate_in_a_transaction(
    empty_source: str, target_dsn: str, tmp_path: Path
) -> None:
    # An EXCLUDE constraint's values traded between rows through a placeholder (the target's
    # set-based UPDATE would see an overlap the source never had); 013_partition: rows moved to
    # another partition with a TOASTed column unchanged (UPDATE of the partition key only);
    # 001_rep_changes / 010_truncate: TRUNCATE and INSERT in one transaction.
    ho.run_sql(empty_source, SHAPES_SQL)
    _stream(
        empty_source,
        target_dsn,
        tmp_path,
        "BEGIN; UPDATE ho.booking SET during = int4range(100000, 100001) WHERE id = 1;"
        " UPDATE ho.booking SET during = int4range(10, 20) WHERE id = 2;"
        " UPDATE ho.booking SET during = int4range(20, 30) WHERE id = 1; COMMIT",
        "BEGIN; UPDATE ho.booking SET during = int4range(-10, -5), id = 1001 WHERE id = 5;"
        " UPDATE ho.booking SET during = int4range(50, 60) WHERE id = 6; COMMIT",
        "UPDATE ho.pt SET at = at + 365 WHERE id % 4 = 0",  # pt_a -> pt_b, doc unchanged
        "UPDATE ho.pt SET id = id + 1000, at = at - 365 WHERE id % 4 = 0 AND id < 100",  # back, new key
        "BEGIN; TRUNCATE ho.q; INSERT INTO ho.q SELECT i, 'after' FROM generate_series(50, 60) i; COMMIT",
        "BEGIN; INSERT INTO ho.q VALUES (1, 'x'); TRUNCATE ho.q; INSERT INTO ho.q VALUES (2, 'y'); COMMIT",
    )


def test_truncating_a_sub_partitioned_partition_stops_the_stream(
    empty_source: str, target_dsn: str, tmp_path: Path
) -> None:
    # The same through a partition that is itself partitioned: TRUNCATE ho.m_eu empties its two
    # leaves, neither of which is in the logical stream.
    ho.run_sql(empty_source, ho.multi_level_partitions(2000))
    stream = ho.Stream(empty_source, target_dsn, tmp_path)
    try:
        ho.run_sql(empty_source, "TRUNCATE ho.m_eu")
        code = stream.proc.wait_exit(timeout=ho.STREAM_TIMEOUT)
    finally:
        stream.stop()
    log = stream.proc.log_tail()
    assert code == 65, log
    assert "ho.m_eu_" in log and "TRUNCATE" in log, log
