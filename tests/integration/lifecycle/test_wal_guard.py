"""WAL guard of IncrementalSyncSensor on a real PostgreSQL and the dev cluster: a stopped stream
whose source keeps writing retains WAL in its slot; past the warning level the sensor warns and
reports the stopped stream, past the limit it fails at once with the advice."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException

from tests.integration.lifecycle.helpers import make_task_footprint
from tests.integration.provider._context import context
from zdtp_provider.operators.incremental import StopIncrementalSyncOperator
from zdtp_provider.sensors.incremental import IncrementalSyncSensor
from zdtp_worker.control.names import task_stream_name

pytestmark = [pytest.mark.cluster, pytest.mark.postgres, pytest.mark.airflow]

MB = 1024 * 1024


def _retained(dsn: str, slot: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots"
            " WHERE slot_name = %s",
            (slot,),
        ).fetchone()[0]


def test_stopped_stream_with_source_writes_crosses_the_limit_and_fails_the_sensor(
    cluster, namespace, airflow_k8s, db_conns, source_dsn, target_dsn, monkeypatch
) -> None:
    task = f"lc-wal-{uuid.uuid4().hex[:6]}"
    make_task_footprint(
        task=task, table="public.tw", source_dsn=source_dsn, target_dsn=target_dsn, namespace=namespace
    )
    monkeypatch.setenv("AIRFLOW_CONN_LC_SRC", source_dsn.replace("postgresql://", "postgres://", 1))
    monkeypatch.setenv("AIRFLOW_CONN_LC_TGT", target_dsn.replace("postgresql://", "postgres://", 1))
    StopIncrementalSyncOperator(task_id="stop", task=task, namespace=namespace, poll_interval=0.5).execute(
        context()
    )
    slot = task_stream_name(task)
    # Retained WAL counts the whole server's writes since the slot's position (other tests'
    # too), so the levels sit above what the slot already holds.
    base = _retained(source_dsn, slot)
    warn, limit = base + 8 * MB, base + 24 * MB
    sensor = IncrementalSyncSensor(
        task_id="s",
        task=task,
        namespace=namespace,
        source_conn_id="lc_src",
        target_conn_id="lc_tgt",
        wal_warn_bytes=warn,
        wal_limit_bytes=limit,
        max_stopped_seconds=0,
    )
    first = sensor.poke(context())
    assert not first.is_done  # scaled to zero: no available replica
    wal = first.xcom_value["wal"]
    assert wal["exists"] and not wal["active"] and wal["verdict"] in ("ok", "warn"), wal
    assert any("stopped for" in m for m in wal["messages"]), wal["messages"]

    # Source writes while nobody reads the slot: its retained WAL grows past the warning level...
    with psycopg.connect(source_dsn, autocommit=True) as conn:
        while _retained(source_dsn, slot) <= warn + 65536:
            conn.execute(
                "INSERT INTO tw SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, 500) g"
                " ON CONFLICT (id) DO UPDATE SET v = excluded.v || 'x'"
            )
    warned = sensor.poke(context()).xcom_value["wal"]
    assert warned["verdict"] == "warn", warned
    assert any("over the warning level" in m for m in warned["messages"])
    # ... and past the limit: the sensor fails at once, saying what holds the WAL and what to do.
    with psycopg.connect(source_dsn, autocommit=True) as conn:
        while _retained(source_dsn, slot) <= limit + 65536:
            conn.execute(
                "INSERT INTO tw SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, 500) g"
                " ON CONFLICT (id) DO UPDATE SET v = excluded.v || 'x'"
            )
    with pytest.raises(AirflowFailException) as failed:
        sensor.poke(context())
    message = str(failed.value)
    assert f"replication slot {slot}" in message and f"over the limit of {limit / MB:.1f} MiB" in message, (
        message
    )
    assert "no stream is reading it" in message and "zdtp teardown" in message
