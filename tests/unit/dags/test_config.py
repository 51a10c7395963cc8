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
