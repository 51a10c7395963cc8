"""The per-chunk checksum's pure parts: which target columns are read back as the source's type,
the SQL both sides run, and the coverage checks ``verify`` applies to a run's stored plans."""

from __future__ import annotations

import json

import pytest

from zdtp_worker.contract.spec import KeyRange
from zdtp_worker.control.row_checksum import (
    bound_text,
    cast_for,
    checksum_select,
    covers_all,
    describe_range,
    from_json,
    part_bounds,
    plan_gaps,
    sum_columns,
    to_json,
)
from zdtp_worker.full.checkpoints import part_key
from zdtp_worker.full.chunking import Chunk
from zdtp_worker.pg.checksum import checksum_sql


@pytest.mark.parametrize(
    ("source", "target", "cast"),
    [
        ("integer", "integer", None),
        ("integer", "bigint", "integer"),
        ("real", "double precision", "real"),
        ("numeric(12,2)", "numeric(14,4)", "numeric(12,2)"),
        ("character(5)", "character(8)", "character(5)"),
        ("character(5)", "text", "character(5)"),
        # Bounded strings compare unbounded: a cast to varchar(10) would truncate a longer value.
        ("character varying(10)", "text", "character varying"),
        ("character varying(10)[]", "text[]", "character varying[]"),
        ("bit varying(4)", "bit varying(8)", "bit varying"),
        ("timestamp(3) without time zone", "timestamp without time zone", "timestamp(3) without time zone"),
        ("date", "timestamp without time zone", "date"),
    ],
)
def test_target_columns_are_read_as_the_source_type(source: str, target: str, cast: str | None) -> None:
    assert cast_for(source, target) == cast


def test_checksum_sql_without_casts_is_the_table_checksum() -> None:
    cols = sum_columns(["id", "v"], {"id": "integer", "v": "text"}, {"id": "integer", "v": "text"})
    assert cols == [("id", None), ("v", None)]
    assert checksum_select('"public"."t"', cols, "x") == checksum_sql('"public"."t"', ["id", "v"], "x")
    widened = sum_columns(["id"], {"id": "integer"}, {"id": "bigint"})
    assert 'ROW("id"::integer)::text' in checksum_select("t", widened)
    # A column the target lacks the type of (not inspected) is read as it is.
    assert sum_columns(["id"], {"id": "integer"}, {}) == [("id", None)]
    assert from_json(to_json(widened)) == widened and from_json(None) is None


def test_a_cast_that_is_not_a_type_name_is_refused() -> None:
    with pytest.raises(ValueError, match="not a type name"):
        checksum_select("t", [("id", "integer); DROP TABLE t; --")])


def test_part_keys_parse_back_to_their_bounds() -> None:
    assert part_bounds(part_key(None)) == (None, None)
    assert part_bounds(part_key(KeyRange(lower=[10], upper=None))) == ([10], None)
    assert bound_text([True, 3, "x"]) == ["true", "3", "x"]


def test_covers_all_needs_a_tiling() -> None:
    assert covers_all([(None, None)])
    assert covers_all([([5], None), (None, [5])])
    assert not covers_all([(None, [5]), ([6], None)])  # gap
    assert not covers_all([(None, [5]), ([5], [9])])  # open end missing
    assert not covers_all([(None, [5]), (None, [7]), ([5], None)])  # overlap


def _chunks(*bounds: tuple[list[str] | None, list[str] | None]) -> list[dict]:
    out = []
    for i, (lo, hi) in enumerate(bounds):
        last = i == len(bounds) - 1
        out.append(
            Chunk(
                i,
                lo if i else ["1"],
                hi if not last else ["99"],
                last,
                lo,
                hi,
                False,
            ).to_json()
        )
    return out


def test_plan_gaps_finds_holes_in_stored_plans() -> None:
    good = _chunks((None, ["10"]), (["10"], ["20"]), (["20"], None))
    assert plan_gaps(good, "") == []
    assert plan_gaps([], "") == ["the plan has no chunk"]
    holed = _chunks((None, ["10"]), (["11"], None))
    assert any("chunks 0 and 1 do not meet" in p for p in plan_gaps(holed, ""))
    # A part [10, 30): the first and last delete bound must be the part's.
    part = json.dumps([[10], [30]], separators=(",", ":"))
    inner = _chunks((["10"], ["20"]), (["20"], ["30"]))
    assert plan_gaps(inner, part) == []
    assert plan_gaps(inner, "") == ["the delete ranges do not reach both ends of the part"]
    renumbered = [dict(c, no=c["no"] + 1) for c in good]
    assert plan_gaps(renumbered, "") == ["chunk numbers are not 0..2"]


def test_describe_range_names_keys() -> None:
    assert describe_range(Chunk(0, None, None, False, None, ["10"], False).to_json()) == "[-inf, 10)"
    assert describe_range(Chunk(0, None, None, False, ["1", "a"], None, False).to_json()) == "[(1, a), +inf)"
