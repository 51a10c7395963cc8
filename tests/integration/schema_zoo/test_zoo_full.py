"""Full sync of the whole zoo with three workers into an empty target that zdtp builds.

Acceptance for issue 12's full-sync side, on PostgreSQL 18 and 15 sources: every table, whatever
its name, key, types or partitioning, lands in the target equal to the source by a per-row digest
of every column; the target's shape reproduces the source's (types, collations, NOT NULL,
defaults, generated columns, identity, primary/unique keys) and owned sequences' last values are
copied.
"""

from __future__ import annotations

import re

from tests.fixtures import digest, schema_zoo
from tests.integration.schema_zoo import harness


def test_three_workers_copy_every_zoo_table_exactly(zoo_source: str, target_dsn: str) -> None:
    config = harness.zoo_config("zoo-full")
    specs = harness.plan(zoo_source, config)
    assert len(specs) == harness.WORKERS
    planned = {str(t.source) for spec in specs for t in spec.tables}
    assert len(planned) == len(schema_zoo.TABLES), planned

    harness.assert_all_ok(harness.run_full_workers(specs, source_dsn=zoo_source, target_dsn=target_dsn))

    digest.assert_same(zoo_source, target_dsn, schemas=[schema_zoo.SCHEMA], sequences="equal")


def test_a_second_run_changes_nothing(zoo_source: str, target_dsn: str) -> None:
    # Resume mode: every chunk of the first run is recorded, a re-run skips them all and the
    # target is still equal (no duplicates in keyless tables, no re-created indexes).
    config = harness.zoo_config("zoo-rerun")
    specs = harness.plan(zoo_source, config)
    harness.assert_all_ok(harness.run_full_workers(specs, source_dsn=zoo_source, target_dsn=target_dsn))
    harness.assert_all_ok(harness.run_full_workers(specs, source_dsn=zoo_source, target_dsn=target_dsn))
    digest.assert_same(zoo_source, target_dsn, schemas=[schema_zoo.SCHEMA], sequences="equal")


def test_plan_lists_quoted_names_and_says_which_table_is_one_chunk(zoo_source: str, tmp_path) -> None:
    # Quoted names are not refused: `zdtp plan` plans every zoo table, and says that the table
    # with neither a primary key nor a NOT NULL unique index is copied as a single chunk.
    config = tmp_path / "zoo.yaml"
    config.write_text(
        "name: zoo-plan\nsource_conn_id: zoo_source\ntarget_conn_id: zoo_target\n"
        'include: ["zoo.*"]\nworkers: 3\nchunk_rows: 400\n',
        encoding="utf-8",
    )
    done = harness.run_cli("plan", str(config), "--source-dsn", zoo_source)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "3 worker(s)" in out, out
    for table in schema_zoo.TABLES:
        assert table.name in out, f"{table.name!r} missing from the plan:\n{out}"
    nokey_lines = [line for line in out.splitlines() if "nokey_plain" in line]
    assert any(re.search(r"one chunk|single chunk", line) for line in nokey_lines), out


def test_three_workers_copy_a_two_table_task(zoo_source: str, target_dsn: str) -> None:
    # Fewer tables than workers: the planner splits both integer-key tables into key ranges, and
    # whatever it hands one worker (two ranges of one table included) must copy.
    tables = ["zoo.identity_serial", "zoo.widen"]
    config = harness.zoo_config("zoo-two", include=[], tables=tables)
    specs = harness.plan(zoo_source, config)
    harness.assert_all_ok(harness.run_full_workers(specs, source_dsn=zoo_source, target_dsn=target_dsn))
    digest.assert_same(zoo_source, target_dsn, schemas=[schema_zoo.SCHEMA], tables=tables, sequences="equal")


def test_kill9_of_a_worker_mid_copy_then_rerun_is_exact(zoo_source: str, target_dsn: str) -> None:
    # Worker w0 is SIGKILLed right after its first finished chunk; the others finish. Re-running
    # w0's spec resumes: finished chunks are kept, the rest is copied once (keyless tables,
    # text/composite keys, partitions and keys-after-load included).
    specs = harness.plan(zoo_source, harness.zoo_config("zoo-kill"))
    victim, others = specs[0], specs[1:]
    proc = harness.start_full_worker(victim, source_dsn=zoo_source, target_dsn=target_dsn)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if '"chunk_done"' in line:
            proc.kill()
            break
    assert proc.wait(timeout=60) == -9, "".join(seen[-5:])
    harness.assert_all_ok(harness.run_full_workers(others, source_dsn=zoo_source, target_dsn=target_dsn))
    harness.assert_all_ok(harness.run_full_workers([victim], source_dsn=zoo_source, target_dsn=target_dsn))
    digest.assert_same(zoo_source, target_dsn, schemas=[schema_zoo.SCHEMA], sequences="equal")
