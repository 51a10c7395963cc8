"""Pure parts of the full-sync engine: SQL fragments, schema checks, plans, error mapping."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import pytest

from zdtp_worker.contract.errors import ConfigError, DataError, TemporaryError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.full.catalog import Column, TableInfo
from zdtp_worker.full.chunking import Chunk, rows_per_chunk
from zdtp_worker.full.progress import Progress
from zdtp_worker.full.schema import check_compatible, staging_name
from zdtp_worker.full.session import _connect_kwargs
from zdtp_worker.full.sqlparts import range_clause
from zdtp_worker.pg.checksum import checksum_sql, format_checksum
from zdtp_worker.pg.errors import classify as map_error
from zdtp_worker.pg.quoting import literal
from zdtp_worker.pg.session import describe_target

INT = Column("id", "integer", 23, "N", True)
TXT = Column("b", "text", 25, "S", False)
TS = Column("ts", "timestamp with time zone", 1184, "D", False)


def _info(*cols: Column, pk: tuple[str, ...] = ("id",), name: str = "t") -> TableInfo:
    return TableInfo(TableName(name=name), cols, pk, 1000, 80_000)


def test_range_clause_single_and_composite() -> None:
    assert range_clause([INT], ["1"], ["10"]) == "\"id\" >= '1'::integer AND \"id\" < '10'::integer"
    assert range_clause([INT], None, ["10"], upper_inclusive=True) == "\"id\" <= '10'::integer"
    assert range_clause([INT], None, None) == "TRUE"
    assert range_clause([], ["x"], None) == "TRUE"
    clause = range_clause([INT, TXT], ["1", "it's"], None)
    assert clause == "(\"id\", \"b\") >= ('1'::integer, 'it''s'::text)"


def test_literal_quotes_and_rejects_nul() -> None:
    assert literal("a'b\\c") == "'a''b\\c'"
    with pytest.raises(DataError):
        literal("a\x00b")


def test_check_compatible() -> None:
    src = _info(INT, TXT, TS)
    assert check_compatible(src, _info(INT, TXT, TS)) == "binary"
    wider = _info(
        Column("id", "bigint", 20, "N", True), Column("b", "character varying", 1043, "S", False), TS
    )
    assert check_compatible(src, wider) == "text"
    with pytest.raises(DataError, match="'ts'"):
        check_compatible(src, _info(INT, TXT, Column("ts", "integer", 23, "N", False)))
    with pytest.raises(DataError, match="'b' is missing"):
        check_compatible(src, _info(INT, TS))
    with pytest.raises(DataError, match="'extra' is NOT NULL"):
        check_compatible(src, _info(INT, TXT, TS, Column("extra", "integer", 23, "N", True)))
    with pytest.raises(DataError, match="primary key"):
        check_compatible(src, _info(INT, TXT, TS, pk=("id", "b")))
    enum_col = Column("e", "mood", 16500, "E", False)
    assert check_compatible(_info(INT, enum_col), _info(INT, enum_col)) == "text"


def test_create_table_sql() -> None:
    # Target DDL is built from the source's full shape now (zdtp_worker.pg.ddl).
    from zdtp_worker.pg.ddl import create_table_sql
    from zdtp_worker.pg.shape import ColumnShape, ConstraintShape, TableShape

    shape = TableShape(
        schema="p",
        name="t",
        relkind="r",
        unlogged=False,
        columns=(ColumnShape("id", "integer", True), ColumnShape("b", "text", False)),
        constraints=(ConstraintShape("t_pkey", "p", 'PRIMARY KEY ("id")'),),
    )
    sql = create_table_sql(shape, schema="s", name="x", with_keys=True)
    assert (
        sql
        == 'CREATE TABLE "s"."x" ("id" integer NOT NULL, "b" text, CONSTRAINT "t_pkey" PRIMARY KEY ("id"))'
    )


def test_staging_name_is_short_and_stable() -> None:
    a = staging_name(TableName(name="x" * 63), "run-1")
    assert len(a.name) <= 63 and a == staging_name(TableName(name="x" * 63), "run-1")
    assert a != staging_name(TableName(name="x" * 63), "run-2")


def test_chunk_json_round_trip() -> None:
    chunk = Chunk(3, ["a", "1"], ["b", "2"], True, None, None, False)
    assert Chunk.from_json(chunk.to_json()) == chunk


def test_rows_per_chunk_by_bytes() -> None:
    info = _info(INT)  # 80 bytes per row
    assert rows_per_chunk(info, chunk_rows=500, chunk_bytes=None, rows=1000) == 500
    assert rows_per_chunk(info, chunk_rows=500, chunk_bytes=8000, rows=1000) == 100


def test_error_mapping() -> None:
    assert isinstance(map_error(asyncpg.SerializationError("x"), role="r"), TemporaryError)
    assert isinstance(map_error(asyncpg.LockNotAvailableError("x"), role="r"), TemporaryError)
    assert isinstance(map_error(asyncpg.AdminShutdownError("x"), role="r"), TemporaryError)
    assert isinstance(map_error(ConnectionResetError("gone"), role="r"), TemporaryError)
    assert isinstance(map_error(asyncpg.InvalidPasswordError("x"), role="r"), ConfigError)
    assert isinstance(map_error(asyncpg.NotNullViolationError("x"), role="r"), DataError)
    msg = str(
        map_error(asyncpg.UniqueViolationError("password=hunter2 dup"), role="target", what="t chunk 1")
    )
    assert "hunter2" not in msg and msg.startswith("target t chunk 1:")


def test_dsn_parsing_never_leaks_password() -> None:
    kwargs = _connect_kwargs("postgresql://u:s%40cret@h:6543/db?sslmode=require", "source")
    assert kwargs == {
        "host": "h",
        "port": 6543,
        "user": "u",
        "password": "s@cret",
        "database": "db",
        "ssl": "require",
    }
    assert _connect_kwargs("host=h port=1 user=u password=p dbname=d", "source")["password"] == "p"
    assert "cret" not in describe_target("postgresql://u:s%40cret@h:6543/db")
    with pytest.raises(ConfigError):
        _connect_kwargs("postgresql://u@h:notaport/db", "target")


def test_checksum_sql_and_format() -> None:
    sql = checksum_sql('"public"."t"', ["id", "v"], "TRUE")
    assert 'md5(ROW("id", "v")::text)' in sql
    assert format_checksum(Decimal(-1)) == "ffffffffffffffff"
    assert format_checksum(None) is None


def test_progress_estimates_inflight_rows() -> None:
    p = Progress(interval=1, total_rows=1000)
    p.start_chunk("t", 0)
    p.finish_chunk(100, 10_000)
    p.start_chunk("t", 1)
    p.add_bytes(5_000)
    snap = p.snapshot()
    assert snap["rows"] == 150 and snap["pct"] == 15.0 and snap["eta_s"] is not None
