"""Shared pytest fixtures: real PostgreSQL, the real dev Kubernetes cluster, an Airflow home.

Session-scoped servers are reused when already running (warm runs stay fast); every test gets
fresh databases / a fresh namespace so tests never see each other's data.

``seed`` gives randomised tests (chaos, generators) their seed: ``ZDTP_TEST_SEED`` replays a run,
otherwise a fresh one is drawn; a failing test's report says how to replay it.

It also holds the real-node policy: tests marked ``realnode`` run real pods. Under
``ZDTP_REAL_NODE=required`` (CI, ``make test`` as root on Linux) any skip of such a test is turned
into a failure carrying the skip's reason; elsewhere a skip stays a skip but the terminal summary
says loudly that no real pod ran. The summary always counts the real-pod tests.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.real_node import real_node_required

REPO = Path(__file__).resolve().parents[1]
STATE_DIR = REPO / ".zdtp"

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.cluster", "tests.fixtures.airflow_home"]

# nodeid -> (outcome, skip reason or "") of every realnode test phase that decided its outcome.
_REAL_NODE_OUTCOMES: dict[str, tuple[str, str]] = {}


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def tmp_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    yield monkeypatch


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """The test's random seed: ``ZDTP_TEST_SEED`` if set (replay), else a fresh one."""
    env = os.environ.get("ZDTP_TEST_SEED")
    value = int(env) if env else random.randrange(1 << 32)
    request.node.user_properties.append(("zdtp_seed", value))
    print(f"zdtp seed {value} (replay: ZDTP_TEST_SEED={value})")
    return value


def pytest_report_header(config: pytest.Config) -> list[str]:
    mode = os.environ.get("ZDTP_REAL_NODE", "") or "optional (realnode tests skip where no node can run)"
    return [
        f"zdtp state dir: {STATE_DIR}",
        f"ZDTP_KUBECONFIG={os.environ.get('ZDTP_KUBECONFIG', '')}",
        f"ZDTP_REAL_NODE={mode}",
    ]


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    seeds = [v for k, v in item.user_properties if k == "zdtp_seed"]
    if report.failed and seeds:
        replay = f"ZDTP_TEST_SEED={seeds[0]} python -m pytest '{item.nodeid}'"
        report.sections.append(("zdtp seed", f"seed {seeds[0]}; replay with: {replay}"))
    if item.get_closest_marker("realnode") is None:
        return
    if report.skipped:
        reason = _skip_reason(report)
        if real_node_required():
            # A skip here can only hide a regression: fail with the reason the skip gave.
            report.outcome = "failed"
            report.longrepr = f"ZDTP_REAL_NODE=required, but this real-pod test was skipped: {reason}"
            _REAL_NODE_OUTCOMES[item.nodeid] = ("failed", reason)
        else:
            _REAL_NODE_OUTCOMES[item.nodeid] = ("skipped", reason)
    elif report.failed:
        _REAL_NODE_OUTCOMES[item.nodeid] = ("failed", "")
    elif report.when == "call":
        _REAL_NODE_OUTCOMES.setdefault(item.nodeid, ("passed", ""))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not _REAL_NODE_OUTCOMES:
        return
    counts = {k: 0 for k in ("passed", "failed", "skipped")}
    for outcome, _ in _REAL_NODE_OUTCOMES.values():
        counts[outcome] += 1
    terminalreporter.section("zdtp real pods")
    terminalreporter.write_line(
        f"real-pod tests: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
        f" (ZDTP_REAL_NODE={os.environ.get('ZDTP_REAL_NODE', '') or 'optional'})"
    )
    skipped = {reason for outcome, reason in _REAL_NODE_OUTCOMES.values() if outcome == "skipped"}
    if skipped:
        terminalreporter.write_line(
            f"!!! {counts['skipped']} REAL-POD TEST(S) SKIPPED: what they check did not run on real pods."
            " ZDTP_REAL_NODE=required makes this an error.",
            red=True,
            bold=True,
        )
        for reason in sorted(skipped):
            terminalreporter.write_line(f"!!!   reason: {reason}", red=True)
