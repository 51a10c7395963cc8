"""A partition DETACHed from (or ATTACHed to) a streamed partitioned table while streaming moves
rows out of (into) it without row changes in the WAL: the stream stops with a data error naming
the partition instead of diverging silently (inbox item S4-3)."""

from __future__ import annotations

import psycopg
import pytest

from tests.integration.worker_cdc.helpers import InProcessWorker, make_spec, wait_until
from zdtp_worker.contract.errors import DataError
from zdtp_worker.incremental.source_watch import SourceWatch

pytestmark = pytest.mark.postgres

DDL = """
CREATE SCHEMA ho;
CREATE TABLE ho.p (id int NOT NULL, k int NOT NULL, v text, PRIMARY KEY (k, id)) PARTITION BY LIST (k);
CREATE TABLE ho.p1 PARTITION OF ho.p FOR VALUES IN (1);
CREATE TABLE ho.p2 PARTITION OF ho.p FOR VALUES IN (2);
CREATE TABLE ho.p3 (LIKE ho.p INCLUDING ALL);
INSERT INTO ho.p SELECT i, 1 + i % 2, 'v' || i FROM generate_series(1, 400) i;
"""


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("ALTER TABLE ho.p DETACH PARTITION ho.p2", "ho.p2 detached"),
        ("ALTER TABLE ho.p ATTACH PARTITION ho.p3 FOR VALUES IN (3)", "ho.p3 attached"),
    ],
    ids=["detach", "attach"],
)
def test_partition_set_change_stops_the_stream(
    source_dsn: str, target_dsn: str, change: str, named: str
) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as conn:
        conn.execute(DDL)
    worker = InProcessWorker(make_spec(["ho.p"]), source_dsn, target_dsn).start().wait_streaming()
    try:
        with psycopg.connect(source_dsn, autocommit=True) as src:
            src.execute("UPDATE ho.p SET v = 'before' WHERE id <= 10")
        wait_until(lambda: worker.metrics is not None and worker.metrics.changes_applied >= 10, timeout=30)
        with psycopg.connect(source_dsn, autocommit=True) as src:
            src.execute(change)
            src.execute("UPDATE ho.p SET v = 'after'")
        wait_until(lambda: worker.error is not None, timeout=40, what="the stream to stop")
        assert isinstance(worker.error, DataError), worker.error
        assert named in str(worker.error) and "ho.p" in str(worker.error)
    finally:
        worker.stop_event.set()
        assert worker.thread is not None
        worker.thread.join(30)


def test_partitions_before_streaming_are_the_baseline(source_dsn: str) -> None:
    """A DETACH after the baseline but before the first poll is still a change (before prime(),
    the first poll took the already-detached set as its baseline: held-out test, loaded machine)."""
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute(DDL)
        src.execute("SELECT pg_create_logical_replication_slot('zdtp_prime', 'pgoutput')")
        try:
            watch = SourceWatch(slot="zdtp_prime", streamed={("ho", "p")}, interval=0)
            watch.prime(src)
            src.execute("ALTER TABLE ho.p DETACH PARTITION ho.p2")
            with pytest.raises(DataError, match=r"ho\.p2 detached"):
                watch.poll(src)
        finally:
            src.execute("SELECT pg_drop_replication_slot('zdtp_prime')")


def test_detach_right_after_streaming_starts_stops_the_stream(source_dsn: str, target_dsn: str) -> None:
    """No change flows before the DETACH: the stream's baseline is the partition set at start-up."""
    with psycopg.connect(source_dsn, autocommit=True) as conn:
        conn.execute(DDL)
    worker = InProcessWorker(make_spec(["ho.p"]), source_dsn, target_dsn).start().wait_streaming()
    try:
        with psycopg.connect(source_dsn, autocommit=True) as src:
            src.execute("ALTER TABLE ho.p DETACH PARTITION ho.p2")
            src.execute("UPDATE ho.p SET v = 'after'")
        wait_until(lambda: worker.error is not None, timeout=40, what="the stream to stop")
        assert isinstance(worker.error, DataError), worker.error
        assert "ho.p2 detached" in str(worker.error)
    finally:
        worker.stop_event.set()
        assert worker.thread is not None
        worker.thread.join(30)
