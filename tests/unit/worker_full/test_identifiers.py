"""Table names with PostgreSQL's quoting rules: parse, fold, render canonically, round-trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zdtp_worker.contract.identifiers import (
    IdentifierError,
    TablePattern,
    canonical,
    parse_qualified,
    render_qualified,
    sql_qualified,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("orders", ("public", "orders")),
        ("Sales.Orders", ("sales", "orders")),  # unquoted folds, as in psql
        ('sales."Order Items"', ("sales", "Order Items")),
        ('"a.b"."x-y"', ("a.b", "x-y")),
        ('public."say ""hi"""', ("public", 'say "hi"')),
        ("public.order", ("public", "order")),  # reserved word: fine, SQL always quotes
        ('"Ünïcødé".tàble', ("Ünïcødé", "tàble")),
        ("public.t$1", ("public", "t$1")),
        ("  public.x  ", ("public", "x")),
    ],
)
def test_parse(text: str, expected: tuple[str, str]) -> None:
    assert parse_qualified(text) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("a.b.c", "3 dot-separated parts"),
        ("public.Order Items", "needs double quotes"),
        ('public."open', "unterminated"),
        ('public.""', "empty quoted"),
        ("public.", "empty name part"),
        ("", "empty table name"),
        ("public.1abc", "needs double quotes"),
        ('public."x"y', "expected '.'"),
        ("public." + "a" * 64, "at most 63"),
        ('public."' + "é" * 32 + '"', "64 bytes"),
    ],
)
def test_refusals_name_the_problem(text: str, needle: str) -> None:
    with pytest.raises(IdentifierError, match=needle):
        parse_qualified(text)


def test_canonical_quotes_only_where_needed() -> None:
    assert canonical("Public.Orders") == "public.orders"
    assert canonical('sales."Order Items"') == 'sales."Order Items"'
    assert canonical('"MixedCase"') == 'public."MixedCase"'
    assert render_qualified("a.b", 'x"y') == '"a.b"."x""y"'
    assert sql_qualified("public", "orders") == '"public"."orders"'
    assert parse_qualified("public." + "a" * 63) == ("public", "a" * 63)


_names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1).filter(
    lambda s: len(s.encode()) <= 63
)


@given(schema=_names, name=_names)
def test_every_identifier_round_trips(schema: str, name: str) -> None:
    assert parse_qualified(render_qualified(schema, name)) == (schema, name)


def test_patterns_match_each_part() -> None:
    assert TablePattern("sales.*").matches("sales", "Order Items")
    assert TablePattern("sales.*").matches("sales", "a.b")
    assert not TablePattern("sales.*").matches("sales2", "x")
    assert TablePattern('"My Schema".order*').matches("My Schema", "orders")
    assert not TablePattern("public.order*").matches("public", "Order Items")  # folds to lower case
    assert TablePattern('public."Order *"').matches("public", "Order Items")
    assert TablePattern("*").matches("public", "anything")  # no schema: public
    assert not TablePattern("*").matches("other", "anything")
