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


def multi_level_partitions(rows: int) -> str:
    """A partitioned table whose partitions are partitioned again (LIST → RANGE / HASH, defaults
    at both levels), ``rows`` rows spread over every leaf."""
    return f"""
        CREATE SCHEMA ho;
        CREATE TABLE ho.m (region text NOT NULL, at date NOT NULL, id int NOT NULL, v text,
                           PRIMARY KEY (region, at, id)) PARTITION BY LIST (region);
        CREATE TABLE ho.m_eu PARTITION OF ho.m FOR VALUES IN ('de', 'fr') PARTITION BY RANGE (at);
        CREATE TABLE ho.m_eu_2024 PARTITION OF ho.m_eu FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        CREATE TABLE ho.m_eu_rest PARTITION OF ho.m_eu DEFAULT;
        CREATE TABLE ho.m_us PARTITION OF ho.m FOR VALUES IN ('us') PARTITION BY HASH (id);
        CREATE TABLE ho.m_us_0 PARTITION OF ho.m_us FOR VALUES WITH (MODULUS 2, REMAINDER 0);
        CREATE TABLE ho.m_us_1 PARTITION OF ho.m_us FOR VALUES WITH (MODULUS 2, REMAINDER 1);
        CREATE TABLE ho.m_rest PARTITION OF ho.m DEFAULT;
        INSERT INTO ho.m
        SELECT (ARRAY['de','fr','us','jp'])[1 + i % 4], date '2023-06-01' + (i % 700), i, 'v' || i
        FROM generate_series(1, {rows}) i;
        ANALYZE;
        """


# Dropped columns leave gaps in attnum that the source's tuples still carry; a column added after.
GAPPY_TABLE = """
        CREATE SCHEMA ho;
        CREATE TABLE ho.gappy (a int, gone1 text, id int PRIMARY KEY, gone2 bytea, b text, c numeric);
        INSERT INTO ho.gappy SELECT i, 'x', i, '\\x00', 'b' || i, i / 3.0 FROM generate_series(1, 1500) i;
        ALTER TABLE ho.gappy DROP COLUMN gone1, DROP COLUMN gone2;
        ALTER TABLE ho.gappy ADD COLUMN d date DEFAULT '2020-02-02';
"""
