"""The planner reads the real catalog: any identifier, the chunk key of a table without a primary
key, and refusals of what zdtp cannot reproduce — before any worker runs."""

from __future__ import annotations

import pytest

from tests.integration.worker_full.helpers import execute
from zdtp_provider.config import SyncTaskConfig
from zdtp_provider.planner import PlanningError, plan_workers, read_catalog

pytestmark = pytest.mark.postgres


def _config(**kw: object) -> SyncTaskConfig:
    return SyncTaskConfig.model_validate({"name": "p", "source_conn_id": "s", "target_conn_id": "t", **kw})


def test_quoted_names_keys_and_notes(source_dsn: str) -> None:
    execute(
        source_dsn,
        """
        CREATE SCHEMA "Odd Schema";
        CREATE TABLE "Odd Schema"."Order Items" ("Item ID" int PRIMARY KEY, v text);
        CREATE TABLE "Odd Schema"."a.b" (id bigint PRIMARY KEY);
        CREATE TABLE "Odd Schema".nokey (a int, b text);
        CREATE TABLE "Odd Schema".ukey (code text NOT NULL, n int, other int NOT NULL);
        CREATE UNIQUE INDEX ukey_n ON "Odd Schema".ukey (n);            -- nullable: not a key
        CREATE UNIQUE INDEX ukey_part ON "Odd Schema".ukey (code) WHERE other > 0;  -- partial
        CREATE UNIQUE INDEX ukey_two ON "Odd Schema".ukey (other, code);
        CREATE UNIQUE INDEX ukey_code ON "Odd Schema".ukey (code);
        INSERT INTO "Odd Schema"."Order Items" SELECT g, 'x' FROM generate_series(1, 50) g;
        """,
    )
    est = {e.name: e for e in read_catalog(source_dsn, _config(include=['"Odd Schema".*']))}
    assert sorted(est) == [
        '"Odd Schema"."Order Items"',
        '"Odd Schema"."a.b"',
        '"Odd Schema".nokey',
        '"Odd Schema".ukey',
    ]
    items = est['"Odd Schema"."Order Items"']
    assert (items.rows, items.pk, items.int_pk_min, items.int_pk_max, items.note) == (
        50,
        ("Item ID",),
        1,
        50,
        None,
    )
    assert est['"Odd Schema".ukey'].pk == ("code",) and est['"Odd Schema".ukey'].key_index == "ukey_code"
    assert "NOT NULL unique index ukey_code (code)" in (est['"Odd Schema".ukey'].note or "")
    assert est['"Odd Schema".nokey'].pk == () and "one chunk" in (est['"Odd Schema".nokey'].note or "")

    specs = plan_workers(_config(include=['"Odd Schema".*']), list(est.values()), run_id="r", workers=2)
    tables = {str(t.source): t for s in specs for t in s.tables}
    assert tables['"Odd Schema".nokey'].allow_single_chunk
    assert not tables['"Odd Schema"."Order Items"'].allow_single_chunk
    assert tables['"Odd Schema"."Order Items"'].source.name == "Order Items"


def test_explicit_table_case_slip_gets_a_hint(source_dsn: str) -> None:
    execute(source_dsn, 'CREATE TABLE "Orders" (id int PRIMARY KEY)')
    with pytest.raises(PlanningError, match=r'no table public.orders .*did you mean public."Orders"\?'):
        read_catalog(source_dsn, _config(tables=["Orders"]))
    assert [e.name for e in read_catalog(source_dsn, _config(tables=['"Orders"']))] == ['public."Orders"']


def test_unreproducible_tables_are_refused_at_plan_time(source_dsn: str) -> None:
    execute(
        source_dsn,
        """
        CREATE TABLE base (x int, y text);
        CREATE TABLE uses_rowtype (id int PRIMARY KEY, r base, rs base[]);
        CREATE TABLE fine (id int PRIMARY KEY);
        """,
    )
    with pytest.raises(PlanningError) as err:
        read_catalog(source_dsn, _config(include=["public.*"]))
    text = str(err.value)
    assert "public.uses_rowtype: column r has type base, the row type of a table" in text
    assert "column rs" in text and "fine" not in text
    # Excluding the table plans the rest.
    assert [
        e.name for e in read_catalog(source_dsn, _config(include=["public.*"], exclude=["public.uses_*"]))
    ] == [
        "public.base",
        "public.fine",
    ]


def test_foreign_partition_is_refused_at_plan_time(source_dsn: str) -> None:
    execute(
        source_dsn,
        """
        CREATE EXTENSION file_fdw;
        CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;
        CREATE TABLE events (id int NOT NULL, at date NOT NULL) PARTITION BY RANGE (at);
        CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
        CREATE FOREIGN TABLE events_old PARTITION OF events FOR VALUES FROM ('2000-01-01') TO ('2025-01-01')
            SERVER files OPTIONS (filename '/dev/null');
        """,
    )
    with pytest.raises(PlanningError, match=r"public.events: partition public.events_old is a foreign table"):
        read_catalog(source_dsn, _config(tables=["events"]))


def test_unreproducible_table_that_exists_on_the_target_is_planned(source_dsn: str, target_dsn: str) -> None:
    ddl = "CREATE TABLE base (x int, y text); CREATE TABLE uses_rowtype (id int PRIMARY KEY, r base);"
    execute(source_dsn, ddl)
    cfg = _config(tables=["uses_rowtype"])
    with pytest.raises(PlanningError, match="uses_rowtype"):
        read_catalog(source_dsn, cfg, target_dsn=target_dsn)  # not on the target yet: refused
    execute(target_dsn, ddl)  # created by the user: zdtp copies into it
    assert [e.name for e in read_catalog(source_dsn, cfg, target_dsn=target_dsn)] == ["public.uses_rowtype"]


def test_named_relations_that_are_not_tables_say_what_they_are(source_dsn: str) -> None:
    execute(
        source_dsn,
        """
        CREATE SCHEMA rk;
        CREATE TABLE rk.base (id int PRIMARY KEY, v text);
        CREATE VIEW rk.v AS SELECT * FROM rk.base;
        CREATE MATERIALIZED VIEW rk.mv AS SELECT * FROM rk.base;
        CREATE SEQUENCE rk.s;
        CREATE TYPE rk.pair AS (a int, b int);
        CREATE TABLE rk.parted (id int PRIMARY KEY) PARTITION BY RANGE (id);
        CREATE TABLE rk.parted_1 PARTITION OF rk.parted FOR VALUES FROM (0) TO (10);
        """,
    )
    with pytest.raises(PlanningError) as err:
        read_catalog(
            source_dsn, _config(tables=["rk.v", "rk.mv", "rk.s", "rk.pair", "rk.parted_1", "rk.base"])
        )
    message = str(err.value)
    for expected in (
        "rk.v is a view: it holds no rows of its own",
        "rk.mv is a materialized view: zdtp copies tables; create it on the target and REFRESH",
        "rk.s is a sequence: zdtp carries the sequences a copied table owns",
        "rk.pair is a composite type, not a table",
        "rk.parted_1 is a partition of rk.parted: zdtp copies a partitioned table through its parent",
    ):
        assert expected in message, message
    assert "source has no table" not in message
    with pytest.raises(PlanningError, match=r"source has no table rk\.nope"):
        read_catalog(source_dsn, _config(tables=["rk.nope", "rk.base"]))
    assert [e.name for e in read_catalog(source_dsn, _config(tables=["rk.base", "rk.parted"]))] == [
        "rk.base",
        "rk.parted",
    ]
