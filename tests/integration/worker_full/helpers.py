"""Helpers for full-sync integration tests: table fingerprints and spec building."""

from __future__ import annotations

from typing import Any

import psycopg

from zdtp_worker.contract.spec import WorkerSpec
from zdtp_worker.pg.checksum import checksum_sql

SESSION = (
    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET extra_float_digits = 3; SET bytea_output = 'hex'"
)


def fingerprint(dsn: str, table: str, columns: list[str] | None = None) -> tuple[int, int]:
    """(row count, order-independent checksum) of a table, computed server-side."""
    schema, _, name = table.rpartition(".")
    schema = schema or "public"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SESSION)
        if columns is None:
            columns = [
                r[0]
                for r in conn.execute(
                    "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                    "AND NOT attisdropped ORDER BY attnum",
                    (f'"{schema}"."{name}"',),
                ).fetchall()
            ]
        row = conn.execute(checksum_sql(f'"{schema}"."{name}"', columns)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def duplicates(dsn: str, table: str, key: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) - count(DISTINCT {key}) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def execute(dsn: str, sql: str, params: Any = None) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql, params)


def scalar(dsn: str, sql: str, params: Any = None) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def make_spec(tables: list[Any], *, run_id: str = "run-1", **full: Any) -> WorkerSpec:
    return WorkerSpec.model_validate(
        {
            "mode": "full",
            "task": "t1",
            "run_id": run_id,
            "tables": [t if isinstance(t, dict) else {"source": t} for t in tables],
            "full": {"progress_interval_seconds": 0.5, **full},
        }
    )


REPO = __import__("pathlib").Path(__file__).resolve().parents[3]


def worker_env(spec: dict[str, Any] | str, source_dsn: str, target_dsn: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("ZDTP_")}
    env.update(
        ZDTP_WORKER_SPEC=spec if isinstance(spec, str) else __import__("json").dumps(spec),
        ZDTP_SOURCE_DSN=source_dsn,
        ZDTP_TARGET_DSN=target_dsn,
        ZDTP_TERMINATION_LOG="/dev/null",
    )
    return env


def run_worker(
    spec: dict[str, Any] | str, source_dsn: str, target_dsn: str, *args: str, timeout: float = 120
) -> Any:
    """Run ``python -m zdtp_worker full`` as a real subprocess; returns CompletedProcess."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "zdtp_worker", "full", *args],
        env=worker_env(spec, source_dsn, target_dsn),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def spec_dict(tables: list[Any], *, run_id: str = "run-1", **full: Any) -> dict[str, Any]:
    return make_spec(tables, run_id=run_id, **full).model_dump(mode="json", by_alias=True)
