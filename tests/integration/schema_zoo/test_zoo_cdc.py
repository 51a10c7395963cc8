"""full+incremental over the zoo: three full-sync workers, then a stream through a DML and DDL
workload with ``kill -9`` of the stream worker in the middle; the target ends equal to the source
by a per-row digest of every column of every table, and its sequences are not behind.

Runs on PostgreSQL 18 and 15 sources, as a DAG run does it: ``prepare_stream`` (publication and
slot before the copy), the planner's three WorkerSpecs as ``zdtp-worker full`` processes, then a
``zdtp-worker incremental`` process that is SIGKILLed right after the 100k-row transaction and
restarted (what a Deployment does), the remaining steps (partition moves, ADD COLUMN with default,
widenings) running after the restart.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from tests.fixtures import digest, schema_zoo
from tests.integration.schema_zoo import harness, workload
from tests.integration.worker_cdc.helpers import wait_until
from zdtp_provider.database_steps import prepare_stream
from zdtp_provider.planner import read_catalog

STREAM_TIMEOUT = 240  # seconds for the target to catch up (a stuck stream fails, never hangs)


def _count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _writing(dsn: str) -> bool:
    """Another session on this database holds an open transaction that has written (the worker
    applying a batch that is not committed yet)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL"
        ).fetchone()
    return bool(row and row[0])


def _excluded() -> list[str]:
    # Plain lower-case names: the same pattern in the old and the quoting-aware config syntax.
    names = [t.name for t in schema_zoo.TABLES if t.cdc_refusal] + sorted(schema_zoo.STREAMED_SEPARATELY)
    return [schema_zoo.label(n) for n in names]


def test_full_then_stream_survives_workload_and_kill9(
    zoo_source: str, target_dsn: str, tmp_path: Path
) -> None:
    config = harness.zoo_config("zoo-cdc", mode="full+incremental", exclude=_excluded())
    tables = [e.name for e in read_catalog(zoo_source, config)]
    assert len(tables) == len(schema_zoo.cdc_tables())
    names = prepare_stream(source_dsn=zoo_source, config=config, tables=tables)

    # Changes made between the slot and the copy are in both: the stream must converge anyway.
    workload.BEFORE_KILL[0].run(zoo_source)
    specs = harness.plan(zoo_source, config)
    assert len(specs) == harness.WORKERS
    harness.assert_all_ok(harness.run_full_workers(specs, source_dsn=zoo_source, target_dsn=target_dsn))

    stream = harness.StreamProcess(
        harness.stream_spec(config, tables, names), zoo_source, target_dsn, log=tmp_path / "stream.log"
    ).start()
    stream.wait_streaming(target_dsn)
    for step in workload.BEFORE_KILL[1:]:
        step.run(zoo_source)

    # kill -9 while the 100k-row transaction is being applied: as soon as the worker has an open,
    # written transaction on the target (or, if it was quicker than the poll, once rows of it are
    # visible); then restart it as the Deployment would.
    before = _count(target_dsn, "zoo.identity_serial")
    try:
        wait_until(
            lambda: (
                stream.check_alive()
                or _writing(target_dsn)
                or _count(target_dsn, "zoo.identity_serial") > before
            ),
            timeout=STREAM_TIMEOUT,
            interval=0.02,
            what="the stream to start applying the 100k-row transaction",
        )
        stream.kill9()
        stream.start()
        for step in workload.AFTER_KILL:
            step.run(zoo_source)

        digest.wait_same(
            zoo_source,
            target_dsn,
            schemas=[schema_zoo.SCHEMA],
            tables=[schema_zoo.label(t) for t in schema_zoo.cdc_tables()],
            sequences="ahead",
            timeout=STREAM_TIMEOUT,
            alive=stream.check_alive,
        )
    finally:
        code = stream.stop()
    assert code == 0, stream.log_tail()
    assert stream.exits[0] == -9


def test_keyless_replica_identity_full_table_streams(
    zoo_source: str, target_dsn: str, tmp_path: Path
) -> None:
    # PostgreSQL's own subscriber streams a keyless REPLICA IDENTITY FULL table by matching whole
    # rows; the issue names "set REPLICA IDENTITY" as a fix for keyless tables. Two identical rows:
    # updating or deleting one must leave the other. Mode incremental over a target seeded while
    # the source is quiet: full+incremental refuses keyless tables (test_zoo_refusals), because
    # the hand-off's replay window would duplicate their inserts.
    table = schema_zoo.quoted("ri_full_nokey")
    config = harness.zoo_config("zoo-rifull", mode="incremental", include=[], tables=[table])
    tables = [e.name for e in read_catalog(zoo_source, config)]
    names = prepare_stream(source_dsn=zoo_source, config=config, tables=tables)
    specs = harness.plan(zoo_source, config)
    harness.assert_all_ok(harness.run_full_workers(specs, source_dsn=zoo_source, target_dsn=target_dsn))
    stream = harness.StreamProcess(
        harness.stream_spec(config, tables, names), zoo_source, target_dsn, log=tmp_path / "stream.log"
    ).start()
    try:
        stream.wait_streaming(target_dsn)
        workload.Step(
            "keyless FULL",
            (
                "UPDATE zoo.ri_full_nokey SET c = 2 WHERE ctid = (SELECT min(ctid) FROM zoo.ri_full_nokey"
                " WHERE b = 'twin')",
                "UPDATE zoo.ri_full_nokey SET b = 'was null' WHERE a IS NULL",
                "DELETE FROM zoo.ri_full_nokey WHERE a = 10",
                "INSERT INTO zoo.ri_full_nokey VALUES (7, 'twin', 1)",
                "DELETE FROM zoo.ri_full_nokey WHERE ctid = (SELECT max(ctid) FROM zoo.ri_full_nokey"
                " WHERE b = 'twin')",
            ),
        ).run(zoo_source)
        digest.wait_same(
            zoo_source,
            target_dsn,
            schemas=[schema_zoo.SCHEMA],
            tables=[schema_zoo.label("ri_full_nokey")],
            sequences="skip",
            timeout=STREAM_TIMEOUT,
            alive=stream.check_alive,
        )
    finally:
        code = stream.stop()
    assert code == 0, stream.log_tail()
