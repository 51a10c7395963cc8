"""Derived names, lease keys, probes and the metrics text."""

from __future__ import annotations

import urllib.error
import urllib.request

from zdtp_worker.contract.spec import WorkerSpec
from zdtp_worker.control.names import publication_name, slot_name
from zdtp_worker.incremental.health import HealthServer, Metrics
from zdtp_worker.incremental.target import lease_key


def spec(task: str, **inc: object) -> WorkerSpec:
    return WorkerSpec.model_validate(
        {"mode": "incremental", "task": task, "run_id": "r", "tables": [{"source": "t"}], "incremental": inc}
    )


def test_names_are_valid_slot_names_and_stable() -> None:
    assert slot_name(spec("orders-sync")) == "zdtp_orders_sync"
    assert publication_name(spec("orders-sync", publication="mine")) == "mine"
    long = "a" * 63
    name = slot_name(spec(long))
    assert len(name) <= 63 and name == slot_name(spec(long)) and name != slot_name(spec("a" * 62 + "b"))


def test_lease_key_is_a_stable_int32() -> None:
    key = lease_key("zdtp_orders")
    assert -(2**31) <= key < 2**31 and key == lease_key("zdtp_orders") and key != lease_key("zdtp_other")


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_probes_follow_the_metrics() -> None:
    m = Metrics(task="t1", slot="s1", ready_max_lag_seconds=5)
    server = HealthServer(m, port=0, host="127.0.0.1").start()
    try:
        assert get(server.port, "/healthz") == (200, "ok\n")
        assert get(server.port, "/readyz")[0] == 503  # no lease yet: a standby
        m.lease_held = m.streaming = True
        assert get(server.port, "/readyz") == (200, "ok\n")
        m.lag_seconds = 9.0
        assert get(server.port, "/readyz") == (503, "lagging 9.0s > 5s\n")
        m.connections_ok = False
        assert get(server.port, "/healthz")[0] == 503
        m.changes_applied = 12
        status, body = get(server.port, "/metrics")
        assert status == 200
        assert 'zdtp_cdc_changes_applied_total{task="t1",slot="s1"} 12' in body
        assert "# TYPE zdtp_cdc_lag_seconds gauge" in body
        assert get(server.port, "/nope")[0] == 404
    finally:
        server.stop()
