"""Run params may narrow a sync task's config, never widen it (``zdtp_provider.run_params``)."""

from __future__ import annotations

import pytest
from airflow.sdk.definitions.param import ParamValidationError

from zdtp_provider.config import SyncTaskConfig
from zdtp_provider.dag_factory import build_dag
from zdtp_provider.run_params import ParamError, cap_workers, narrow_tables, run_config


def _config(**kw) -> SyncTaskConfig:
    base = {
        "name": "shop",
        "source_conn_id": "s",
        "target_conn_id": "t",
        "tables": ["public.orders"],
        "include": ["shop.*"],
        "exclude": ["shop.secrets"],
        "workers": 3,
    }
    return SyncTaskConfig.model_validate({**base, **kw})


def test_tables_narrow_to_listed_and_included_tables() -> None:
    cfg = run_config(_config(), {"tables": ["orders", "shop.items", "shop.items"], "workers": 2})
    assert cfg.tables == ["public.orders", "shop.items"]
    assert cfg.include == [] and cfg.exclude == []
    assert cfg.select_tables(["public.orders", "shop.items", "shop.other"]) == ["public.orders", "shop.items"]
    assert cfg.workers == 2


def test_empty_tables_keep_the_configs_selection() -> None:
    cfg = run_config(_config(), {"tables": [], "workers": None})
    assert cfg.tables == ["public.orders"] and cfg.include == ["shop.*"] and cfg.workers == 3


@pytest.mark.parametrize("table", ["public.customers", "shop.secrets", "other.orders"])
def test_tables_outside_the_selection_are_refused(table: str) -> None:
    with pytest.raises(ParamError) as err:
        narrow_tables(_config(), ["public.orders", table])
    message = str(err.value)
    assert table in message and "only narrow" in message and "public.orders," not in message.split("(")[0]


def test_workers_are_capped_by_the_config() -> None:
    assert cap_workers(_config(), 50) == 3
    assert cap_workers(_config(), 1) == 1
    assert cap_workers(_config(), 0) == 1
    assert cap_workers(_config(), None) == 3


def test_the_dag_params_carry_the_configs_limit() -> None:
    dag = build_dag(_config(mode="full+incremental"))
    assert dag.params.get_param("workers").schema["maximum"] == 3
    assert dag.params["workers"] == 3
    with pytest.raises(ParamValidationError, match="greater than the maximum of 3"):
        dag.params["workers"] = 4
