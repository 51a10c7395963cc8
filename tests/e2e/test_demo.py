"""The README's main job, ``make demo``, end to end through real pods, on a live source.

The demo must copy the shop through worker pods on the real node (each copy task's XCom holds the
summary its container wrote) while a writer commits to the source the whole time, stream the
writer's changes through the incremental Deployment, and after the writer stops end with source
and target checksums that are equal and match what the databases hold afterwards; it prints
``zdtp status`` for its sync task. A demo that fell back to simulated pods is a skip where no real
node can run and a failure under ``ZDTP_REAL_NODE=required``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass

import psycopg
import pytest

from devtools.postgres import ensure_server
from tests.conftest import REPO, STATE_DIR
from zdtp_provider.database_steps import compare_tables

pytestmark = [pytest.mark.realnode, pytest.mark.cluster, pytest.mark.postgres, pytest.mark.airflow]

SOURCE_DB, TARGET_DB = "zdtp_demo_source", "zdtp_demo_target"
TABLES = sorted(
    ["public.customers", "public.orders", "public.products", "public.stock_moves", "public.product_pages"]
)
KEYS = {"public.products": "sku"}  # the others: id
SEEDED_ROWS = 50_000 + 2_000 + 300_000 + 20_000 + 200  # 01-shop.sql + the writer's two tables
WRITER = re.compile(r"stopped the writer \(seed \d+\): (\d+) transactions in [\d.]+s: (.*)$", re.M)
# "    public.orders   150000   150000  <source checksum> / <target checksum>"
ROW = re.compile(r"^\s+(public\.\w+)\s+(\d+)\s+(\d+|-)\s+(\S+) / (\S+)")


@dataclass(frozen=True)
class Printed:
    source_rows: int
    target_rows: int
    source_checksum: str
    target_checksum: str


def printed_table(out: str, title: str) -> dict[str, Printed]:
    """The per-table block the demo printed under ``title``."""
    lines = out.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == title), None)
    assert start is not None, f"the demo printed no {title!r} block:\n{out[-4000:]}"
    rows: dict[str, Printed] = {}
    for line in lines[start + 2 :]:
        match = ROW.match(line)
        if not match:
            break
        table, src, tgt, s_sum, t_sum = match.groups()
        rows[table] = Printed(int(src), -1 if tgt == "-" else int(tgt), s_sum, t_sum)
    assert sorted(rows) == TABLES, (title, rows)
    return rows


def fingerprint(dsn: str, table: str) -> tuple[int, str]:
    """Independent of zdtp's checksum: count and md5 of every row's text, in key order."""
    with psycopg.connect(dsn) as conn:
        key = KEYS.get(table, "id")
        query = f"SELECT count(*), md5(string_agg(t::text, '|' ORDER BY {key})) FROM {table} t"
        return conn.execute(query).fetchone()


def test_demo_copies_through_real_pods_then_streams(cluster) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "devtools.demo"], cwd=REPO, capture_output=True, text=True, timeout=1800
    )
    out = proc.stdout
    if "SIMULATED" in out and proc.returncode == 0:
        reason = next(line.strip() for line in out.splitlines() if "SIMULATED" in line)
        pytest.skip(f"make demo fell back to simulated pods: {reason}")
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-2000:]
    assert "Result: OK — target equals source (rows and checksums)" in out
    assert "DAG run: success" in out
    assert re.search(r"real node \S+ \(kubelet \+ containerd\) runs the worker image", out), out[:2000]

    # Real pods: every copy task's XCom is the summary its container wrote. They copied the
    # source as of the slot's point: the seeded rows give or take what the writer had done by then.
    workers = re.findall(r"^\s+copy\[\d+\]\s+success\s+worker (w\d+): (\d+) rows$", out, re.M)
    assert workers, f"no copy task reported a worker result:\n{out[-4000:]}"
    assert len({w for w, _ in workers}) == len(workers)
    copied = sum(int(rows) for _, rows in workers)

    # The writer ran the whole time: every kind of change was committed, some while streaming.
    match = WRITER.search(out)
    assert match, f"the demo printed no writer report:\n{out[-4000:]}"
    counts = {k: int(v) for k, v in (part.rsplit(" ", 1) for part in match.group(2).split(", "))}
    assert counts and all(v > 0 for v in counts.values()), counts
    assert abs(copied - SEEDED_ROWS) <= sum(counts.values()), (copied, counts)
    streamed = re.search(r"^\s+(\d+) writer transactions committed while the stream ran$", out, re.M)
    assert streamed and int(streamed.group(1)) > 0, out[-4000:]
    assert re.search(r"^\s+converged [\d.]+s after the writer stopped$", out, re.M), out[-4000:]

    # The end: every table equal by count and checksum, as printed.
    final = printed_table(out, "after the writer stopped and the stream caught up:")
    for table, p in final.items():
        assert p.source_rows > 0 and (p.target_rows, p.target_checksum) == (
            p.source_rows,
            p.source_checksum,
        ), (
            table,
            p,
        )

    # zdtp status printed one line for the sync task: mode, its Deployment, the full run.
    status = re.search(r"^\s+shop-mirror\s+full\+incremental\s+deploy=(\S+) .*full=(\S+)", out, re.M)
    assert status, f"no zdtp status line for shop-mirror:\n{out[-4000:]}"
    assert status.group(2) != "-", status.group(0)

    # The printed checksums are the databases' own, measured again now, and an independent
    # fingerprint agrees that target equals source.
    server = ensure_server(STATE_DIR / "pg")
    source, target = server.dsn(SOURCE_DB), server.dsn(TARGET_DB)
    now = {
        r.table: (r.source_rows, r.target_rows, r.source_checksum, r.target_checksum)
        for r in compare_tables(source_dsn=source, target_dsn=target, tables=TABLES, level="checksum")
    }
    assert now == {
        t: (p.source_rows, p.target_rows, p.source_checksum, p.target_checksum) for t, p in final.items()
    }
    for table in TABLES:
        assert fingerprint(source, table) == fingerprint(target, table), table
