"""Pure planning: balanced workers, bounded key-range splits that cover the whole key space."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zdtp_provider.config import SyncTaskConfig
from zdtp_provider.planner import PlanningError, TableEstimate, pack, plan_workers, split_units

CFG = SyncTaskConfig(name="shop", source_conn_id="s", target_conn_id="t", include=["public.*"], workers=4)


def test_small_tables_are_packed_whole_and_balanced() -> None:
    est = [
        TableEstimate(f"public.t{i}", rows, 0, ("id",)) for i, rows in enumerate([100, 90, 50, 40, 30, 20])
    ]
    specs = plan_workers(CFG, est, run_id="r1", workers=2)
    assert len(specs) == 2
    loads = [sum(next(e.rows for e in est if e.name == str(t.source)) for t in s.tables) for s in specs]
    assert sorted(loads) == [160, 170]
    assert sorted(str(t.source) for s in specs for t in s.tables) == sorted(e.name for e in est)
    assert all(s.run_id == "r1" and s.task == "shop" and s.mode == "full" for s in specs)


def test_big_integer_table_is_split_into_adjacent_ranges() -> None:
    est = [
        TableEstimate("public.big", 1_000_000, 0, ("id",), 1, 1_000_000),
        TableEstimate("public.s", 10, 0, ("k",)),
    ]
    specs = plan_workers(CFG, est, run_id="r")
    inf = float("inf")
    ranges = sorted(
        ((t.key_range.lower or [-inf])[0], (t.key_range.upper or [inf])[0])
        for s in specs
        for t in s.tables
        if t.key_range is not None
    )
    assert len(ranges) == 4
    assert ranges[0][0] == -inf and ranges[-1][1] == inf
    for (_, upper), (lower, _) in itertools.pairwise(ranges):
        assert upper == lower  # adjacent: no gap, no overlap


def test_swap_mode_never_splits() -> None:
    cfg = CFG.model_copy(update={"copy_mode": "swap"})
    est = [TableEstimate("public.big", 1_000_000, 0, ("id",), 1, 1_000_000)]
    specs = plan_workers(cfg, est, run_id="r")
    assert len(specs) == 1 and specs[0].tables[0].key_range is None


def test_no_tables_is_an_error() -> None:
    with pytest.raises(PlanningError, match="selects no tables"):
        plan_workers(CFG, [], run_id="r")


@given(
    rows=st.lists(st.integers(0, 10_000_000), min_size=1, max_size=30),
    workers=st.integers(1, 16),
)
def test_every_table_is_planned_exactly_once(rows: list[int], workers: int) -> None:
    est = [TableEstimate(f"public.t{i}", r, 0, ("id",), 0, r) for i, r in enumerate(rows)]
    units = split_units(est, workers=workers, allow_split=True)
    bins = pack(units, workers=workers)
    assert 1 <= len(bins) <= workers
    packed = [u for b in bins for u in b]
    assert sorted(packed, key=repr) == sorted(units, key=repr)  # pack neither loses nor repeats units
    inf = float("inf")
    for e in est:
        pieces = [u.key_range for u in packed if u.table == e.name]
        assert pieces, e.name
        if pieces == [None]:
            continue  # copied whole, by one worker
        assert None not in pieces, (e.name, pieces)  # never whole *and* in ranges
        bounds = sorted(((r.lower or [-inf])[0], (r.upper or [inf])[0]) for r in pieces)
        # The ranges tile the whole key space: open at both ends, each non-empty, each adjacent
        # to the next (no gap, no overlap, no duplicate).
        assert bounds[0][0] == -inf and bounds[-1][1] == inf, bounds
        assert all(lo < hi for lo, hi in bounds), bounds
        for (_, upper), (lower, _) in itertools.pairwise(bounds):
            assert upper == lower, bounds


def test_plan_carries_keys_and_single_chunk_decisions_and_any_name() -> None:
    est = [
        TableEstimate('sales."Order Items"', 1_000_000, 0, ("Item ID",), 1, 1_000_000),
        TableEstimate("sales.by_code", 500, 0, ("code",), key_index="by_code_code"),
        TableEstimate('"a.b"."x-y"', 300, 0, ()),
    ]
    specs = plan_workers(CFG, est, run_id="r", workers=3)
    tables = [t for s in specs for t in s.tables]
    items = [t for t in tables if t.source.name == "Order Items"]
    assert len(items) == 3 and all(t.key == ("Item ID",) and not t.allow_single_chunk for t in items)
    (by_code,) = (t for t in tables if t.source.name == "by_code")
    assert by_code.key == ("code",) and not by_code.allow_single_chunk
    (keyless,) = (t for t in tables if t.source.name == "x-y")
    assert keyless.key is None and keyless.allow_single_chunk and keyless.source.schema_ == "a.b"
    assert est[2].note and "one chunk" in est[2].note and "by_code_code" in (est[1].note or "")
    assert est[0].note is None
    # Names are canonical in the spec JSON too, and the workers are named w0..wN whatever the tables.
    assert {str(t.source) for t in tables} == {e.name for e in est}
    assert sorted(s.worker for s in specs) == ["w0", "w1", "w2"]


def test_table_names_in_kubernetes_labels_are_valid_and_distinct() -> None:
    # Table names never become object names; when one is used as a label value it is hashed.
    from zdtp_provider.k8s.names import label_value, validate_label

    names = ['zoo."Order Items"', 'zoo."order items"', 'zoo."größe_日本"', "zoo." + '"' + "x" * 63 + '"']
    values = [label_value(n) for n in names]
    for v in values:
        validate_label("zdtp.io/table", v, field="labels")
    assert len(set(values)) == len(values)


def test_ranges_of_one_table_go_to_different_workers_when_possible() -> None:
    est = [
        TableEstimate("public.a", 701, 0, ("id",), 1, 701),
        TableEstimate("public.b", 1000, 0, ("id",), 1, 1000),
    ]
    specs = plan_workers(CFG, est, run_id="r", workers=3)
    for spec in specs:
        names = [str(t.source) for t in spec.tables]
        assert len(names) == len(set(names)), names
