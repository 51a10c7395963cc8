"""The planner's choice of parallel COPY streams per worker (zdtp_provider.auto_streams)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zdtp_provider.auto_streams import (
    MAX_AUTO_STREAMS,
    choose_streams,
    cpu_cores,
    worker_cpu,
)
from zdtp_provider.config import SyncTaskConfig
from zdtp_provider.planner import TableEstimate, plan_workers

CFG = SyncTaskConfig(name="shop", source_conn_id="s", target_conn_id="t", include=["public.*"], workers=1)


@pytest.mark.parametrize(
    ("quantity", "cores"),
    [("250m", 0.25), ("1", 1.0), ("1.5", 1.5), ("2000m", 2.0), ("0.1", 0.1), (None, None)],
)
def test_cpu_quantities(quantity: str | None, cores: float | None) -> None:
    assert cpu_cores(quantity) == cores


def test_worker_cpu_prefers_the_request_then_the_limit() -> None:
    assert worker_cpu({"cpu": "500m"}, {"cpu": "2"}) == 0.5
    assert worker_cpu({"memory": "1Gi"}, {"cpu": "2"}) == 2.0  # Kubernetes: request = limit
    assert worker_cpu({}, {}) == 0.25


def test_small_table_gets_one_stream() -> None:
    # 3 chunks: not enough to give two streams two chunks each.
    assert choose_streams(rows=700_000, chunk_rows=250_000, cpu=4.0) == 1
    assert choose_streams(rows=0, chunk_rows=250_000, cpu=4.0) == 1


def test_big_table_on_the_default_request_gets_two() -> None:
    # The benchmark's 5M-row table, default chunking and request: two streams (measured faster).
    assert choose_streams(rows=5_000_000, chunk_rows=250_000, cpu=0.25) == 2


def test_cpu_bounds_and_the_cap() -> None:
    assert choose_streams(rows=50_000_000, chunk_rows=250_000, cpu=0.1) == 1
    assert choose_streams(rows=50_000_000, chunk_rows=250_000, cpu=0.375) == 3
    assert choose_streams(rows=50_000_000, chunk_rows=250_000, cpu=16) == MAX_AUTO_STREAMS


def test_explicit_setting_wins() -> None:
    assert choose_streams(rows=50_000_000, chunk_rows=250_000, cpu=16, explicit=1) == 1
    assert choose_streams(rows=10, chunk_rows=250_000, cpu=0.1, explicit=7) == 7


@given(
    rows=st.integers(0, 10**10),
    chunk_rows=st.integers(1, 10**7),
    cpu=st.floats(0.001, 64, allow_nan=False),
)
def test_choice_is_bounded_and_leaves_every_stream_two_chunks(rows: int, chunk_rows: int, cpu: float) -> None:
    n = choose_streams(rows=rows, chunk_rows=chunk_rows, cpu=cpu)
    assert 1 <= n <= MAX_AUTO_STREAMS
    if n > 1:
        chunks = -(-rows // chunk_rows)
        assert chunks >= 2 * n  # a crash redoes at most n chunks, of at least 2n
        assert cpu >= 0.125 * n - 1e-9


def test_planner_sets_streams_per_worker() -> None:
    est = [
        TableEstimate("public.big", 5_000_000, 0, ("id",), 1, 5_000_000),
        TableEstimate("public.small", 1_000, 0, ("id",)),
        TableEstimate("public.nokey", 5_000_000, 0, ()),  # one chunk: streams cannot share it
    ]
    cfg = CFG.model_copy(update={"workers": 3})
    specs = plan_workers(cfg, est, run_id="r", workers=3)
    by_table = {str(t.source): s.full.streams for s in specs for t in s.tables}
    assert by_table["public.nokey"] == 1
    # The big table is split over the workers it shares with the others; its parts still get 2.
    big = [s.full.streams for s in specs for t in s.tables if str(t.source) == "public.big"]
    assert big and all(n == 2 for n in big)


def test_planner_follows_the_cpu_request() -> None:
    est = [TableEstimate("public.big", 20_000_000, 0, ("id",), 1, 20_000_000)]
    one_core = CFG.model_copy(
        update={"resources": CFG.resources.model_copy(update={"requests": {"cpu": "1"}})}
    )
    assert plan_workers(one_core, est, run_id="r", workers=1)[0].full.streams == MAX_AUTO_STREAMS
    tiny = CFG.model_copy(
        update={"resources": CFG.resources.model_copy(update={"requests": {"cpu": "100m"}})}
    )
    assert plan_workers(tiny, est, run_id="r", workers=1)[0].full.streams == 1
