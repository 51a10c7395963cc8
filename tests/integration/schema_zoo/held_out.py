"""Shared steps of the held-out scenarios: a small source schema ``ho`` built by the test, copied
by the planner's three workers (``zdtp-worker full``) and, for streams, followed by a
``zdtp-worker incremental`` process; compared with the per-row digest of every column."""

from __future__ import annotations

from pathlib import Path

import psycopg

from tests.fixtures import digest
from tests.integration.schema_zoo import harness
from zdtp_provider.database_steps import prepare_stream
from zdtp_provider.planner import read_catalog

SCHEMA = "ho"
STREAM_TIMEOUT = 180


def run_sql(dsn: str, *scripts: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for script in scripts:
            conn.execute(script)


def rows(dsn: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def config(name: str, *, mode: str = "full", include: list[str] | None = None, **extra):
    return harness.zoo_config(
        name, mode=mode, include=[f"{SCHEMA}.*"] if include is None else include, **extra
    )


def full_copy(source: str, target: str, name: str = "ho-full", **extra) -> list[harness.Finished]:
    specs = harness.plan(source, config(name, **extra))
    return harness.run_full_workers(specs, source_dsn=source, target_dsn=target)


def copy_and_compare(source: str, target: str, *, sequences: digest.SequenceMode = "equal", **extra) -> None:
    harness.assert_all_ok(full_copy(source, target, **extra))
    digest.assert_same(source, target, schemas=[SCHEMA], sequences=sequences)


class Stream:
    """full+incremental over schema ``ho``: slot, three full workers, one stream worker."""

    def __init__(self, source: str, target: str, tmp_path: Path, name: str = "", **extra) -> None:
        self.source, self.target = source, target
        # The slot name follows the task name and slots are per server: one per source database,
        # so concurrent runs on the same server never meet ("slot ... exists for database ...").
        name = name or "ho-cdc-" + source.rsplit("_", 1)[-1]
        self.config = config(name, mode="full+incremental", **extra)
        self.tables = [e.name for e in read_catalog(source, self.config)]
        self.names = prepare_stream(source_dsn=source, config=self.config, tables=self.tables)
        harness.assert_all_ok(
            harness.run_full_workers(harness.plan(source, self.config), source_dsn=source, target_dsn=target)
        )
        self.proc = harness.StreamProcess(
            harness.stream_spec(self.config, self.tables, self.names),
            source,
            target,
            log=tmp_path / "stream.log",
        ).start()
        self.proc.wait_streaming(target)

    def wait_same(self, *, sequences: digest.SequenceMode = "ahead", tables: list[str] | None = None) -> None:
        digest.wait_same(
            self.source,
            self.target,
            schemas=[SCHEMA],
            tables=tables,
            sequences=sequences,
            timeout=STREAM_TIMEOUT,
            alive=self.proc.check_alive,
        )

    def stop(self) -> int:
        return self.proc.stop()
