"""A minimal task context for calling an operator's ``execute`` directly against the cluster.

Used where the behaviour under test is the operator's API traffic (Job reuse, queue semantics,
rollouts), not Airflow's scheduling; the dag.test runs in test_full_sync cover the latter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeTI:
    dag_id: str = "zt_dag"
    task_id: str = "zt_task"
    map_index: int = -1
    try_number: int = 1
    xcom: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def context(run_id: str = "manual__2024-01-01T00:00:00+00:00", **ti: Any) -> dict[str, Any]:
    return {"ti": FakeTI(**ti), "run_id": run_id, "task_state_store": None}
