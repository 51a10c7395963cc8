"""Stream settings in the sync file reach the incremental worker's spec (and bad ones are named)."""

from __future__ import annotations

import pytest

from zdtp_provider.config import ConfigError, parse_config
from zdtp_provider.workload.specs import stream_spec

BASE = {
    "name": "orders",
    "mode": "incremental",
    "source_conn_id": "s",
    "target_conn_id": "t",
    "tables": ["public.orders"],
}


@pytest.mark.parametrize("value", [True, False])
def test_lossy_type_change_setting_reaches_the_worker_spec(value: bool) -> None:
    config = parse_config({**BASE, "allow_lossy_type_changes": value}, origin="orders.yaml")
    spec = stream_spec(config, ["public.orders"])
    assert spec.incremental.allow_lossy_type_changes is value
    assert (
        stream_spec(
            parse_config(BASE, origin="x.yaml"), ["public.orders"]
        ).incremental.allow_lossy_type_changes
        is False
    )


def test_a_bad_value_is_named_with_file_and_field() -> None:
    with pytest.raises(ConfigError, match=r"orders\.yaml.*allow_lossy_type_changes = 'maybe'"):
        parse_config({**BASE, "allow_lossy_type_changes": "maybe"}, origin="orders.yaml")
