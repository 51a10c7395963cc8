"""The DAG's ``verify`` task checks the run from its recorded evidence (``database_steps.verify_run``)
with the plan's run id and target tables, never the source, and fails naming the table and the
first problem. The checks themselves run on real PostgreSQL in
tests/integration/worker_full/test_live_verify.py."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException

from zdtp_provider import dag_factory, database_steps
from zdtp_provider.config import load_config
from zdtp_provider.workload.sync_task import VERIFY_TASK
from zdtp_worker.contract.spec import WorkerSpec
from zdtp_worker.control.verify import RunVerification, TableVerification

SYNC = Path(__file__).resolve().parents[3] / "dags" / "syncs" / "shop_full_stream.yaml"


def _specs(config: Any) -> list[dict[str, Any]]:
    return [
        WorkerSpec.model_validate(
            {"mode": "full", "task": config.name, "run_id": "manual__1", "worker": f"w{i}", "tables": tables}
        ).model_dump(mode="json", by_alias=True)
        for i, tables in enumerate(
            [
                [{"source": "public.orders", "key_range": {"upper": [100]}}],
                [{"source": "public.orders", "key_range": {"lower": [100]}}, {"source": "public.items"}],
            ]
        )
    ]


@pytest.fixture
def task(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any, list[dict[str, Any]]]:
    config = load_config(SYNC)
    op = dag_factory.build_dag(config).task_dict[VERIFY_TASK]
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(dag_factory, "_dsn", lambda conn_id, *, sslmode: f"dsn-of-{conn_id}")
    events: defaultdict[Any, list[Any]] = defaultdict(list)
    context = {"outlet_events": defaultdict(lambda: SimpleNamespace(add=events["alias"].append))}
    monkeypatch.setattr(dag_factory, "get_current_context", lambda: context)

    def fake(**kwargs: Any) -> RunVerification:
        calls.append(kwargs)
        return fake.result  # type: ignore[attr-defined]

    monkeypatch.setattr(database_steps, "verify_run", fake)
    return op.python_callable, fake, calls


def test_verify_reads_the_target_only_with_the_plans_run(task: Any) -> None:
    call, fake, calls = task
    fake.result = RunVerification("shop", "manual__1", "count", [TableVerification("public.orders", 4, 4)])
    plan = _specs(load_config(SYNC))
    out = call(plan)
    (kwargs,) = calls
    assert kwargs["run_id"] == "manual__1"
    assert kwargs["target_dsn"].startswith("dsn-of-") and "source" not in kwargs
    assert database_steps.planned_targets(kwargs["specs"]) == ["public.orders", "public.items"]
    assert out["tables"][0]["table"] == "public.orders" and out["tables"][0]["ok"]


def test_verify_fails_naming_table_and_problem(task: Any) -> None:
    call, fake, _ = task
    bad = TableVerification(
        "public.orders", 4, 3, problems=["1 chunk(s) have no record: chunk 2 keys [50, 100)"]
    )
    fake.result = RunVerification("shop", "manual__1", "checksum", [bad])
    plan = _specs(load_config(SYNC))
    with pytest.raises(AirflowException, match=r"failed for public.orders: .*chunk 2 keys \[50, 100\)"):
        call(plan)


def test_dry_run_verifies_nothing(task: Any) -> None:
    call, _, calls = task
    assert call([])["dry_run"] is True and calls == []
