"""The WAL guard's verdict (pure): levels, the stopped-stream report, invalidated slots."""

from __future__ import annotations

import datetime as dt

from zdtp_provider.status import status_line
from zdtp_worker.control.status import WalLimits, wal_verdict

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
MB = 1 << 20


def _slot(**kw) -> dict:
    return {
        "slot": "zdtp_s",
        "exists": True,
        "active": True,
        "retained_wal_bytes": 0,
        "checked_at": NOW.isoformat(),
        **kw,
    }


def test_levels() -> None:
    limits = WalLimits(warn_bytes=10 * MB, fail_bytes=100 * MB)
    assert wal_verdict(_slot(retained_wal_bytes=MB), limits) == ("ok", [])
    level, (msg,) = wal_verdict(_slot(retained_wal_bytes=20 * MB), limits)
    assert level == "warn" and "over the warning level of 10.0 MiB" in msg
    level, (msg,) = wal_verdict(_slot(retained_wal_bytes=200 * MB, active=False), limits)
    assert level == "fail" and "over the limit of 100.0 MiB" in msg and "no stream is reading it" in msg
    assert "zdtp teardown" in msg


def test_missing_slot_and_no_limits_are_ok() -> None:
    assert wal_verdict({"slot": "zdtp_s", "exists": False}, WalLimits(fail_bytes=0)) == ("ok", [])
    assert wal_verdict(_slot(retained_wal_bytes=10**12), WalLimits()) == ("ok", [])


def test_invalidated_slot_fails_whatever_the_limits() -> None:
    level, (msg,) = wal_verdict(_slot(wal_status="lost"), WalLimits())
    assert level == "fail" and "invalidated" in msg and "full+incremental" in msg


def test_stopped_stream_reported_from_inactive_since_or_the_last_apply() -> None:
    limits = WalLimits(max_stopped_seconds=3600)
    old = (NOW - dt.timedelta(hours=2)).isoformat()
    level, (msg,) = wal_verdict(_slot(active=False, inactive_since=old), limits)
    assert level == "warn" and "stopped for 7200s" in msg
    # Before PG 17 there is no inactive_since: the target's last apply stands in.
    level, msgs = wal_verdict(_slot(active=False), limits, stopped_since=NOW - dt.timedelta(minutes=5))
    assert (level, msgs) == ("ok", [])
    level, _ = wal_verdict(_slot(active=False), limits, stopped_since=NOW - dt.timedelta(hours=3))
    assert level == "warn"
    # An active slot is never "stopped".
    assert wal_verdict(_slot(active=True), limits, stopped_since=NOW - dt.timedelta(days=1)) == ("ok", [])


def test_status_line_shows_every_field() -> None:
    line = status_line(
        {
            "task": "shop",
            "mode": "full+incremental",
            "deployment": "available",
            "restarts": 2,
            "lag_seconds": 1.25,
            "lag_bytes": 4096,
            "slot": "active",
            "retained_wal_bytes": 3 * MB,
            "wal_verdict": "ok",
            "last_full_run": {"finished": "2026-12-01T10:00:00+00:00", "rows": 7, "chunks": 2},
            "last_verify": {"state": "success", "finished": "2026-12-01T10:01:00+00:00"},
            "errors": [],
        }
    )
    for part in (
        "deploy=available restarts=2",
        "lag=1.2s/4096B",
        "slot=active wal=3.0MiB(ok)",
        "rows=7 chunks=2",
        "verify=success@2026-12-01T10:01:00",
    ):
        assert part in line, (part, line)
