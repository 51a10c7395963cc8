"""Which source column type changes the stream follows by itself (pure classification)."""

from __future__ import annotations

import pytest

from zdtp_worker.incremental.type_change import classify, parse


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("integer", "bigint"),
        ("smallint", "integer"),
        ("smallint", "bigint"),
        ("integer", "numeric"),
        ("integer", "numeric(12,0)"),
        ("bigint", "numeric(19,0)"),
        ("numeric(12,2)", "numeric(14,4)"),
        ("numeric(12,2)", "numeric"),
        ("numeric(5,0)", "numeric(7,2)"),
        ("character varying(10)", "character varying(20)"),
        ("character varying(10)", "text"),
        ("character varying(10)", "character varying"),
        ("text", "character varying"),
        ("character(3)", "character(5)"),
        ("character(3)", "text"),
        ("real", "double precision"),
        ("timestamp(3) without time zone", "timestamp without time zone"),
        ("date", "timestamp without time zone"),
        ("integer[]", "bigint[]"),
        ("bit varying(4)", "bit varying(8)"),
    ],
)
def test_safe_widenings(old: str, new: str) -> None:
    assert classify(old, new) == "widen"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("timestamp without time zone", "timestamp with time zone"),
        ("date", "timestamp with time zone"),
    ],
)
def test_time_zone_dependent_widenings_need_the_source_values(old: str, new: str) -> None:
    assert classify(old, new) == "widen_backfill"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("bigint", "integer"),
        ("numeric(12,4)", "numeric(12,2)"),
        ("numeric(12,2)", "numeric(12,4)"),  # scale up but fewer integer digits
        ("numeric", "numeric(12,2)"),
        ("integer", "numeric(5,0)"),
        ("timestamp with time zone", "date"),
        ("timestamp with time zone", "timestamp without time zone"),
        ("double precision", "real"),
        ("character varying(20)", "character varying(10)"),
        ("text", "character varying(10)"),
        ("character(5)", "character(3)"),
        ("json", "jsonb"),
        ("text", "integer"),
        ("integer", "text"),
        ("integer[]", "integer"),
        ("timestamp without time zone", "timestamp(3) without time zone"),
    ],
)
def test_lossy_or_unknown_changes(old: str, new: str) -> None:
    assert classify(old, new) == "lossy"


def test_same_type() -> None:
    assert classify("numeric(12,2)", "numeric(12,2)") == "same"


def test_parse() -> None:
    assert parse("character varying(20)[]").base == "character varying"
    assert parse("character varying(20)[]").mods == (20,)
    assert parse("character varying(20)[]").array_dims == 1
    assert parse("timestamp(3) with time zone").base == "timestamp with time zone"
    assert parse("numeric(12,2)").mods == (12, 2)
    assert parse('"Weird Type"').base == '"Weird Type"'
