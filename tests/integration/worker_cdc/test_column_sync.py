"""Source column changes followed on the target without losing a value (real PostgreSQL, no stream).

Each test changes the source table the way a user would, then asks ColumnSync to reconcile the
target as the stream does when the next Relation message arrives, and compares every column.
"""

from __future__ import annotations

import psycopg
import pytest

from zdtp_worker.contract.errors import DataError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.control.catalog import type_names
from zdtp_worker.incremental.column_sync import ColumnSync
from zdtp_worker.pg.session import libpq_options

pytestmark = pytest.mark.postgres

T = TableName(schema="public", name="t")
BASE = (
    "CREATE TABLE t (id int PRIMARY KEY, qty int NOT NULL, name varchar(5), price numeric(12,4),"
    " at timestamp)"
)
ROWS = (
    "INSERT INTO t SELECT g, g, 'n' || g, g / 3.0, timestamp '2024-03-10 01:30' + g * interval '1 hour'"
    " FROM generate_series(1, 50) g"
)


def connect(dsn: str, *, autocommit: bool) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=autocommit, options=libpq_options())


def published(src: psycopg.Connection) -> list[tuple[str, str]]:
    """What a Relation message would carry now: non-generated columns with format_type()."""
    rows = src.execute(
        "SELECT attname, atttypid::int, atttypmod FROM pg_attribute WHERE attrelid = 't'::regclass"
        " AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum"
    ).fetchall()
    return list(zip([r[0] for r in rows], type_names(src, [(r[1], r[2]) for r in rows]), strict=True))


def rows(dsn: str, columns: str) -> list[tuple]:
    with connect(dsn, autocommit=True) as conn:
        return conn.execute(f"SELECT {columns} FROM t ORDER BY id").fetchall()


@pytest.fixture
def pair(source_dsn: str, target_dsn: str):
    for dsn in (source_dsn, target_dsn):
        with connect(dsn, autocommit=True) as conn:
            conn.execute(BASE)
            conn.execute(ROWS)
    src = connect(source_dsn, autocommit=True)
    tgt = connect(target_dsn, autocommit=False)
    yield src, tgt
    src.close()
    tgt.close()


def reconcile(
    src: psycopg.Connection, tgt: psycopg.Connection, *, first_sight: bool = False, **kw
) -> list[str]:
    done = ColumnSync(src, tgt, **kw).reconcile(
        source=T, target=T, published=published(src), key=("id",), first_sight=first_sight
    )
    tgt.commit()
    return done


def test_add_column_with_default_keeps_old_rows_reading_it(pair, source_dsn: str, target_dsn: str) -> None:
    src, tgt = pair
    src.execute("ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 7")
    src.execute("ALTER TABLE t ALTER COLUMN c SET DEFAULT 9")  # later default: old rows still read 7
    src.execute("ALTER TABLE t ADD COLUMN label text DEFAULT 'it''s'")
    done = reconcile(src, tgt)
    assert done == [
        "c: added, old rows read the source's default",
        "label: added, old rows read the source's default",
    ]
    assert rows(target_dsn, "c, label") == rows(source_dsn, "c, label") == [(7, "it's")] * 50
    with connect(target_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO t (id, qty) VALUES (1000, 1)")
        assert conn.execute("SELECT c FROM t WHERE id = 1000").fetchone() == (9,)  # the source's default


def test_volatile_default_rename_and_drop(pair, source_dsn: str, target_dsn: str) -> None:
    src, tgt = pair
    src.execute("ALTER TABLE t ADD COLUMN r double precision DEFAULT random()")  # rewrites, not decoded
    src.execute("ALTER TABLE t RENAME COLUMN name TO title")
    src.execute("ALTER TABLE t DROP COLUMN qty")
    done = reconcile(src, tgt)
    assert "qty: kept (dropped or renamed on the source), now nullable" in done
    assert rows(target_dsn, "r, title") == rows(source_dsn, "r, title")
    assert rows(target_dsn, "name")[0] == ("n1",)  # the old name keeps its data
    with connect(target_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO t (id) VALUES (1000)")  # qty no longer blocks new rows


def test_widenings_applied_and_time_zone_dependent_one_copied(pair, source_dsn: str, target_dsn: str) -> None:
    src, tgt = pair
    src.execute("ALTER TABLE t ALTER COLUMN qty TYPE bigint")
    src.execute("ALTER TABLE t ALTER COLUMN name TYPE varchar(20)")
    src.execute("ALTER TABLE t ALTER COLUMN price TYPE numeric(16,6)")
    src.execute("SET TimeZone = 'America/New_York'")  # the DDL session's zone decides the values
    src.execute("ALTER TABLE t ALTER COLUMN at TYPE timestamptz")
    src.execute("RESET TimeZone")
    done = reconcile(src, tgt)
    assert done[:3] == [
        "qty: widened integer -> bigint",
        "name: widened character varying(5) -> character varying(20)",
        "price: widened numeric(12,4) -> numeric(16,6)",
    ]
    assert done[3].startswith("at: timestamp without time zone -> timestamp with time zone, 50 values copied")
    assert rows(target_dsn, "*") == rows(source_dsn, "*")


def test_lossy_change_refused_unless_opted_in(pair, source_dsn: str, target_dsn: str) -> None:
    src, tgt = pair
    src.execute("ALTER TABLE t ALTER COLUMN price TYPE numeric(12,2)")
    with pytest.raises(DataError) as err:
        reconcile(src, tgt)
    assert "column price of public.t changed type on the source from numeric(12,4) to numeric(12,2)" in str(
        err.value
    )
    assert "incremental.allow_lossy_type_changes" in str(err.value)
    tgt.rollback()
    reconcile(src, tgt, allow_lossy=True)
    assert rows(target_dsn, "*") == rows(source_dsn, "*")


def test_generated_columns_are_computed_by_the_target(pair, source_dsn: str, target_dsn: str) -> None:
    src, tgt = pair
    src.execute("ALTER TABLE t ADD COLUMN total numeric GENERATED ALWAYS AS (qty * price) STORED")
    done = reconcile(src, tgt)
    assert done == ["total: added as generated (computed on the target)"]
    assert rows(target_dsn, "total") == rows(source_dsn, "total")
    with connect(target_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE t DROP COLUMN total")
        conn.execute("ALTER TABLE t ADD COLUMN total numeric")
    with pytest.raises(DataError, match="generated on the source but a plain column on the target"):
        reconcile(src, tgt)


def test_replayed_changes_from_before_a_widening_are_accepted(pair, source_dsn: str, target_dsn: str) -> None:
    src, tgt = pair
    # A restarted worker followed the widening at start; the stream then replays older changes
    # whose Relation message still says integer.
    tgt.execute("ALTER TABLE t ALTER COLUMN qty TYPE bigint")
    tgt.commit()
    assert reconcile(src, tgt) == []
