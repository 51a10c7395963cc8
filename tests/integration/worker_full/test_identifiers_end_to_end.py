"""Any identifier end to end: YAML-style names → plan → spec JSON → worker (SQL, checkpoints,
result) → verify, for names with dots, quotes, spaces, upper case, non-ASCII and 63 bytes."""

from __future__ import annotations

import json

import pytest

from tests.integration.worker_full.helpers import execute, scalar
from zdtp_provider.config import SyncTaskConfig
from zdtp_provider.planner import plan_workers, read_catalog
from zdtp_worker.contract.spec import WorkerSpec
from zdtp_worker.control.verify import compare_tables
from zdtp_worker.full import run_full

pytestmark = pytest.mark.postgres

LONG = "Ü" * 31 + "x"  # 63 bytes
SCHEMA = 'Odd "Schema".v2'


def test_odd_names_copy_verify_and_record(source_dsn: str, target_dsn: str) -> None:
    q_schema = '"Odd ""Schema"".v2"'
    execute(
        source_dsn,
        f"""
        CREATE SCHEMA {q_schema};
        CREATE TABLE {q_schema}."Order Items" ("Item ID" int PRIMARY KEY, "select" text, "a.b" int);
        CREATE TABLE {q_schema}."{LONG}" ("ключ" bigint PRIMARY KEY, "Wert" text);
        INSERT INTO {q_schema}."Order Items" SELECT g, 'v' || g, g % 3 FROM generate_series(1, 2000) g;
        INSERT INTO {q_schema}."{LONG}" SELECT g, 'w' || g FROM generate_series(1, 500) g;
        ANALYZE;
        """,
    )
    cfg = SyncTaskConfig.model_validate(
        {
            "name": "odd",
            "source_conn_id": "s",
            "target_conn_id": "t",
            "include": [f"{q_schema}.*"],
            "workers": 2,
            "chunk_rows": 300,
        }
    )
    estimates = read_catalog(source_dsn, cfg)
    names = sorted(e.name for e in estimates)
    assert names == [f'{q_schema}."Order Items"', f'{q_schema}."{LONG}"']
    specs = plan_workers(cfg, estimates, run_id="odd-run")
    results = []
    for spec in specs:
        # The spec travels as JSON into the pod: names survive the round trip.
        spec = WorkerSpec.model_validate(json.loads(spec.to_json()))
        results.append(run_full(spec, source_dsn=source_dsn, target_dsn=target_dsn))
    copied: dict[str, int] = {}
    for t in (t for r in results for t in r.tables):  # a split table is in several results
        copied[t.table] = copied.get(t.table, 0) + t.rows
    assert sum(copied.values()) == 2500 and set(copied) == set(names)
    assert {
        c.table: c.equal
        for c in compare_tables(source_dsn=source_dsn, target_dsn=target_dsn, tables=names, level="checksum")
    } == dict.fromkeys(names, True)
    recorded = scalar(
        target_dsn, "SELECT array_agg(DISTINCT target_table ORDER BY target_table) FROM zdtp.full_plans"
    )
    assert recorded == names
    assert scalar(target_dsn, f'SELECT count(*) FROM {q_schema}."{LONG}"') == 500
