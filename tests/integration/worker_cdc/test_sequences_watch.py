"""Sequences kept ahead on the target; the source watch's slot figures and new-table report."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from zdtp_worker.contract.errors import DataError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.incremental.sequences import SequenceKeeper
from zdtp_worker.incremental.source_watch import SourceWatch

pytestmark = pytest.mark.postgres

DDL = """
CREATE SEQUENCE shared_seq;
CREATE TABLE ids (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, s serial,
                  o bigint DEFAULT nextval('shared_seq'));
"""

IDS = TableName(schema="public", name="ids")


@pytest.fixture
def pair(source_dsn: str, target_dsn: str) -> Iterator[tuple[psycopg.Connection, psycopg.Connection]]:
    """Source and target connections, each with the DDL above."""
    with (
        psycopg.connect(source_dsn, autocommit=True) as src,
        psycopg.connect(target_dsn, autocommit=True) as tgt,
    ):
        src.execute(DDL)
        tgt.execute(DDL)
        yield src, tgt


def test_sequences_move_ahead_never_back(pair: tuple[psycopg.Connection, psycopg.Connection]) -> None:
    src, tgt = pair
    keeper = SequenceKeeper({IDS: IDS})
    assert keeper.sync(src, tgt) == {}  # never used on the source: nothing to move
    src.execute("INSERT INTO ids DEFAULT VALUES; INSERT INTO ids DEFAULT VALUES")
    moved = keeper.sync(src, tgt)
    assert sorted(moved.values()) == [2, 2, 2] and len(moved) == 3
    tgt.execute("SELECT setval('shared_seq', 100)")  # ids handed out on the target: keep them
    src.execute("INSERT INTO ids DEFAULT VALUES")
    keeper.sync(src, tgt)
    nexts = tgt.execute(
        "SELECT nextval(pg_get_serial_sequence('ids', 'id')), nextval('ids_s_seq'), nextval('shared_seq')"
    ).fetchone()
    assert nexts == (4, 4, 101)


def test_a_sequence_restarted_on_the_source_reaches_the_target(
    pair: tuple[psycopg.Connection, psycopg.Connection],
) -> None:
    # RESTART / setval(.., false) leave the source "not called" at a value past the target's ids.
    src, tgt = pair
    src.execute("INSERT INTO ids DEFAULT VALUES")
    keeper = SequenceKeeper({IDS: IDS})
    keeper.sync(src, tgt)
    src.execute("ALTER TABLE ids ALTER COLUMN id RESTART WITH 1000")
    src.execute("SELECT setval('shared_seq', 500, false)")
    moved = keeper.sync(src, tgt)
    assert sorted(moved.values()) == [500, 1000]
    src.execute("ALTER TABLE ids ALTER COLUMN id RESTART WITH 10")  # behind the target: kept ahead
    assert keeper.sync(src, tgt) == {}
    nexts = tgt.execute(
        "SELECT nextval(pg_get_serial_sequence('ids', 'id')), nextval('shared_seq')"
    ).fetchone()
    assert nexts == (1000, 500)


def test_watch_reports_slot_and_new_tables(source_dsn: str) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute('CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE "New Orders" (id int PRIMARY KEY)')
        src.execute("CREATE SCHEMA other; CREATE TABLE other.x (id int)")
        src.execute("SELECT pg_create_logical_replication_slot('zdtp_watch', 'pgoutput')")
        watch = SourceWatch(slot="zdtp_watch", streamed={("public", "a")}, include=["public.*"], interval=0)
        report = watch.poll(src)
        assert report.not_streamed == ('public."New Orders"',)
        assert report.retained_bytes is not None and report.retained_bytes >= 0
        assert report.safe_wal_bytes is None  # max_slot_wal_keep_size = -1 on the dev server
        assert watch.due()
        watch.exclude = ['public."New Orders"']
        assert watch.poll(src).not_streamed == ()
        src.execute("SELECT pg_drop_replication_slot('zdtp_watch')")
        with pytest.raises(DataError, match="replication slot zdtp_watch disappeared while streaming"):
            watch.poll(src)
