"""The sync-task file's ``streams`` setting: it overrides the planner's choice, and bad values are
refused naming the field."""

from __future__ import annotations

import pytest

from zdtp_provider.config import ConfigError, parse_config
from zdtp_provider.planner import TableEstimate, plan_workers

BASE = {"name": "shop", "source_conn_id": "s", "target_conn_id": "t", "include": ["public.*"], "workers": 2}
ESTIMATES = [
    TableEstimate("public.big", 5_000_000, 0, ("id",), 1, 5_000_000),
    TableEstimate("public.small", 1_000, 0, ("id",)),
]


def test_streams_setting_wins_for_every_worker() -> None:
    config = parse_config({**BASE, "streams": 3}, origin="shop.yaml")
    specs = plan_workers(config, ESTIMATES, run_id="r1")
    assert [s.full.streams for s in specs] == [3] * len(specs)


def test_unset_streams_are_chosen_from_the_work() -> None:
    config = parse_config({**BASE, "workers": 1}, origin="shop.yaml")
    [small] = plan_workers(config, ESTIMATES[1:], run_id="r1")
    [big] = plan_workers(config, ESTIMATES[:1], run_id="r1")
    assert (small.full.streams, big.full.streams) == (1, 2)


@pytest.mark.parametrize("value", [0, 17, "many"])
def test_bad_streams_value_is_refused_naming_file_and_field(value: object) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config({**BASE, "streams": value}, origin="shop.yaml")
    message = str(refused.value)
    assert "shop.yaml" in message and "streams" in message, message
