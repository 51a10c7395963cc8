"""Set-up shared by the lifecycle tests: a sync task's full footprint (Deployment + Secret in
the cluster, slot + publication on the source, state rows in the target: stream position, queue,
one full run of one chunk, one verify) made by zdtp's own code."""

from __future__ import annotations

import psycopg

from tests.integration.provider._context import context
from zdtp_provider.operators.incremental import IncrementalSyncOperator
from zdtp_worker.contract.spec import TableName
from zdtp_worker.control import verify_log
from zdtp_worker.control.names import task_stream_name
from zdtp_worker.control.stream_setup import prepare_stream
from zdtp_worker.full import checkpoints, finalize
from zdtp_worker.full import queue as pg_queue
from zdtp_worker.incremental.target import STATE_DDL


def run_sql(dsn: str, *statements: str, args: tuple = ()) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement, args or None)


def catalog_names(source_dsn: str) -> tuple[set[str], set[str]]:
    """(slots of this database, publications) on the source."""
    with psycopg.connect(source_dsn, autocommit=True) as conn:
        slots = {
            r[0]
            for r in conn.execute(
                "SELECT slot_name FROM pg_replication_slots WHERE database = current_database()"
            )
        }
        pubs = {r[0] for r in conn.execute("SELECT pubname FROM pg_publication")}
    return slots, pubs


def state_rows(target_dsn: str, task: str, table: str) -> dict[str, int]:
    stream = task_stream_name(task)
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        one = lambda sql, arg: conn.execute(sql, (arg,)).fetchone()[0]  # noqa: E731
        return {
            "cdc_state": one("SELECT count(*) FROM zdtp.cdc_state WHERE stream = %s", stream),
            "work_queue": one("SELECT count(*) FROM zdtp.work_queue WHERE queue LIKE %s", f"{task}.%"),
            "full_plans": one("SELECT count(*) FROM zdtp.full_plans WHERE target_table = %s", table),
            "full_chunks": one("SELECT count(*) FROM zdtp.full_chunks WHERE target_table = %s", table),
            "full_tables": one("SELECT count(*) FROM zdtp.full_tables WHERE target = %s", table),
            "verify_log": one("SELECT count(*) FROM zdtp.verify_log WHERE task = %s", task),
        }


def make_task_footprint(*, task: str, table: str, source_dsn: str, target_dsn: str, namespace: str) -> None:
    """What a full+incremental run of ``task`` leaves behind, streaming ``table``."""
    run_sql(source_dsn, f"CREATE TABLE IF NOT EXISTS {table} (id int PRIMARY KEY, v text)")
    name = task_stream_name(task)
    prepare_stream(
        source_dsn=source_dsn, tables=[TableName.model_validate(table)], slot=name, publication=name
    )
    qualified = str(TableName.model_validate(table))
    run_sql(
        target_dsn,
        "CREATE SCHEMA IF NOT EXISTS zdtp",
        STATE_DDL,
        pg_queue._DDL,
        checkpoints._DDL,
        finalize._DDL,
        verify_log.DDL,
    )
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO zdtp.cdc_state (stream, commit_lsn, end_lsn) VALUES (%s, '0/1', '0/2')", (name,)
        )
        conn.execute(
            "INSERT INTO zdtp.work_queue (queue, dedup_key, payload) VALUES (%s, 'k', '{}')", (f"{task}.abc",)
        )
        conn.execute(
            "INSERT INTO zdtp.full_plans (run_id, target_table, source_table, copy_table, chunks)"
            " VALUES ('r1', %s, %s, %s, '[{\"no\": 0}]')",
            (qualified, qualified, qualified),
        )
        conn.execute(
            "INSERT INTO zdtp.full_chunks (run_id, target_table, chunk_no, rows, bytes, worker, seconds)"
            " VALUES ('r1', %s, 0, 1, 1, 'w0', 0.1)",
            (qualified,),
        )
        conn.execute("INSERT INTO zdtp.full_tables (run_id, target) VALUES ('r1', %s)", (qualified,))
        conn.execute(
            "INSERT INTO zdtp.verify_log (task, run_id, level, ok, detail)"
            " VALUES (%s, 'r1', 'count', true, '{}')",
            (task,),
        )
    IncrementalSyncOperator(
        task_id="stream",
        namespace=namespace,
        spec={"task": task, "tables": [{"source": table}]},
        image="zdtp/worker:1",
        source_conn_id="zt_src",
        target_conn_id="zt_tgt",
        deferrable=False,
        poll_interval=0.5,
    ).execute(context(task_id="stream"))
