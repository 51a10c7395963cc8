"""The re-run guard's decision: which facts refuse a full+incremental copy, what the message says,
and which runs fail or are skipped."""

from __future__ import annotations

import pytest

from zdtp_provider.rerun_guard import StreamFacts, decide, refusal

BASE = {"deployment": "zdtp-shop-w0-cdc", "namespace": "zdtp", "slot": "zdtp_shop"}
ARGS = {"task": "shop", "dag_id": "zdtp_shop", "source_file": "/syncs/shop.yaml"}


def test_nothing_of_a_stream_lets_the_copy_run() -> None:
    # First run, or after teardown; also a failed earlier copy, which left only an unread slot.
    assert refusal(StreamFacts(**BASE), **ARGS) is None
    assert refusal(StreamFacts(**BASE, slot_exists=True), **ARGS) is None
    assert decide(None, run_type="manual") == "go"


@pytest.mark.parametrize(
    ("facts", "running"),
    [
        ({"replicas": 1, "created": "2026-12-01T22:40:03+00:00"}, True),
        ({"slot_exists": True, "slot_active": True}, True),  # read by a stream we cannot see
        ({"replicas": 0}, False),
        ({"applied": {"end_lsn": "0/2", "updated_at": "2026-12-01T23:00:00+00:00"}}, False),
    ],
    ids=["deployment-running", "slot-active", "scaled-to-zero", "applied-position"],
)
def test_any_sign_of_a_stream_refuses(facts: dict, running: bool) -> None:
    found = refusal(StreamFacts(**BASE, **facts), **ARGS)
    assert found is not None and found.running is running
    assert "so this run copies nothing" in found.message
    assert "`zdtp teardown /syncs/shop.yaml`" in found.message
    assert 'teardown=["shop"]' in found.message and "`airflow dags trigger zdtp_shop`" in found.message
    assert "\n" not in found.message


def test_message_names_what_was_found() -> None:
    running = refusal(
        StreamFacts(
            **BASE, replicas=1, created="2026-12-01T22:40:03+00:00", slot_exists=True, slot_active=True
        ),
        **ARGS,
    )
    assert running is not None
    assert running.message.startswith(
        "sync task 'shop': the stream is running (Deployment zdtp/zdtp-shop-w0-cdc with 1 replica(s)"
        " since 2026-12-01T22:40:03+00:00, slot zdtp_shop active)"
    )
    stopped = refusal(StreamFacts(**BASE, replicas=0, slot_exists=True), **ARGS)
    assert stopped is not None and "is stopped" in stopped.message
    assert "kubectl -n zdtp scale deployment zdtp-shop-w0-cdc --replicas=1" in stopped.message


def test_without_a_file_the_command_needs_the_connections() -> None:
    found = refusal(StreamFacts(**BASE, replicas=1), task="shop", dag_id="zdtp_shop", source_file=None)
    assert found is not None
    assert "`zdtp teardown shop --namespace <ns> --source-dsn <dsn> --target-dsn <dsn>" in found.message


@pytest.mark.parametrize(
    ("running", "run_type", "verdict"),
    [
        (True, "manual", "fail"),
        (True, "backfill", "fail"),
        (True, "scheduled", "skip"),
        (True, "asset_triggered", "skip"),
        (False, "scheduled", "fail"),  # a stopped stream needs a person, whoever started the run
        (False, "manual", "fail"),
    ],
)
def test_scheduled_runs_skip_a_running_stream_others_fail(running: bool, run_type: str, verdict: str) -> None:
    facts = StreamFacts(**BASE, replicas=1 if running else 0)
    assert decide(refusal(facts, **ARGS), run_type=run_type) == verdict
