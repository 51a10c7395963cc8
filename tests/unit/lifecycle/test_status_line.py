"""``zdtp status``'s one line per task: the last full run's result and chunk counts, the last
verify's outcome and level, and older dicts (no planned count, Airflow's verify) still print."""

from __future__ import annotations

from zdtp_provider.status import status_line

STREAM = {
    "task": "shop",
    "mode": "full+incremental",
    "deployment": "available",
    "restarts": 0,
    "lag_seconds": 0.4,
    "lag_bytes": 1024,
    "slot": "active",
    "retained_wal_bytes": 3 * 1048576,
    "wal_verdict": "ok",
    "errors": [],
}


def test_full_run_and_verify_from_the_target() -> None:
    line = status_line(
        {
            **STREAM,
            "last_full_run": {
                "finished": "2026-12-01T22:40:03.123+00:00",
                "rows": 30500,
                "chunks": 3,
                "planned_chunks": 4,
                "result": "incomplete",
            },
            "last_verify": {"state": "failed", "level": "checksum", "finished": "2026-12-01T22:40:09+00:00"},
        }
    )
    assert "deploy=available restarts=0  lag=0.4s/1024B  slot=active wal=3.0MiB(ok)" in line
    assert "full=2026-12-01T22:40:03(incomplete) rows=30500 chunks=3/4" in line
    assert line.endswith("verify=failed[checksum]@2026-12-01T22:40:09")


def test_nothing_known_and_older_shapes() -> None:
    line = status_line({**STREAM, "last_full_run": None, "last_verify": None, "errors": ["source: down"]})
    assert "full=-  verify=-  errors: source: down" in line
    older = status_line(
        {
            "task": "copy",
            "mode": "full",
            "last_full_run": {"finished": "2026-12-01T22:40:03", "rows": 1, "chunks": 1},
            "last_verify": {"state": "success", "finished": "2026-12-01T22:41:00"},
        }
    )
    assert "deploy=" not in older and "full=2026-12-01T22:40:03 rows=1 chunks=1" in older
    assert older.endswith("verify=success@2026-12-01T22:41:00")
