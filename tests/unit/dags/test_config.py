"""Sync-task config validation: good files load, bad ones name file, field and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from zdtp_provider.config import ConfigError, SyncTaskConfig, load_config, parse_config

GOOD = {"name": "orders", "source_conn_id": "src", "target_conn_id": "tgt", "tables": ["orders"]}


def test_defaults_and_normalised_tables() -> None:
    cfg = parse_config(GOOD, origin="x.yaml")
    assert cfg.tables == ["public.orders"]
    assert cfg.dag_id == "zdtp_orders"
    assert (cfg.mode, cfg.fanout, cfg.verify, cfg.schedule) == ("full", "tasks", "count", None)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"name": "Orders_1"}, "name = 'Orders_1'"),
        ({"workers": 0}, "workers = 0"),
        ({"mode": "mirror"}, "mode = 'mirror'"),
        ({"schedule": "every day"}, "schedule = 'every day'"),
        ({"tables": ["a.b.c"]}, "tables = ['a.b.c']"),
        ({"resources": {"requests": {"cpu": "lots"}}}, "resources.requests"),
        ({"colour": "red"}, "colour = 'red': Extra inputs are not permitted"),
        ({"target_conn_id": "src"}, "must differ"),
    ],
)
def test_bad_values_are_named(change: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**GOOD, **change}, origin="dags/syncs/orders.yaml")
    text = str(err.value)
    assert text.startswith("dags/syncs/orders.yaml: ")
    assert expected in text
    assert "\n" not in text


def test_missing_field_is_named() -> None:
    with pytest.raises(ConfigError, match=r"x.yaml: source_conn_id: Field required"):
        parse_config({k: v for k, v in GOOD.items() if k != "source_conn_id"}, origin="x.yaml")


def test_broken_yaml_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntables: [a, b\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+ invalid YAML"):
        load_config(bad)


def test_include_exclude_patterns() -> None:
    cfg = SyncTaskConfig.model_validate(
        {**GOOD, "tables": ["public.orders"], "include": ["sales.*"], "exclude": ["sales.tmp_*"]}
    )
    catalog = ["public.orders", "public.other", "sales.items", "sales.tmp_x", "sales.customers"]
    assert cfg.select_tables(catalog) == ["public.orders", "sales.customers", "sales.items"]


def test_quoted_table_names_are_canonical() -> None:
    cfg = parse_config(
        {**GOOD, "tables": ['sales."Order Items"', "Sales.Orders", '"a.b"."x-y"', 'public."order"']},
        origin="x.yaml",
    )
    assert cfg.tables == ['sales."Order Items"', "sales.orders", '"a.b"."x-y"', "public.order"]


@pytest.mark.parametrize(
    ("tables", "needle"),
    [
        (["sales.Order Items"], "needs double quotes"),
        (['sales."Order Items'], "unterminated"),
        (["public." + "x" * 64], "at most 63"),
    ],
)
def test_bad_table_names_are_named(tables: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**GOOD, "tables": tables}, origin="x.yaml")
    assert f"tables = {tables!r}" in str(err.value) and needle in str(err.value)


def test_patterns_select_quoted_names() -> None:
    cfg = SyncTaskConfig.model_validate(
        {**GOOD, "tables": [], "include": ["sales.*", '"Odd Schema".*'], "exclude": ['sales."tmp *"']}
    )
    catalog = ['sales."Order Items"', 'sales."tmp x"', '"Odd Schema"."a.b"', "public.orders"]
    assert cfg.select_tables(catalog) == ['"Odd Schema"."a.b"', 'sales."Order Items"']


def test_bad_pattern_is_named() -> None:
    with pytest.raises(ConfigError, match=r"include = \['sales\.a b'\].*needs double quotes"):
        parse_config({**GOOD, "include": ["sales.a b"]}, origin="x.yaml")
