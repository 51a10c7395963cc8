"""The README's main job, ``make demo``, end to end through real pods.

The demo must copy the shop through worker pods on the real node (each copy task's XCom holds the
summary its container wrote), print source and target checksums that are equal and that match
what the databases hold afterwards, and then stream live changes through the incremental
Deployment (the target follows the source to new checksums). A demo that fell back to simulated
pods is a skip where no real node can run and a failure under ``ZDTP_REAL_NODE=required``.
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
TABLES = ["public.customers", "public.orders", "public.products"]
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
        key = "sku" if table == "public.products" else "id"
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

    # Real pods: every copy task's XCom is the summary its container wrote; together they copied
    # exactly the source's rows.
    copied = printed_table(out, "copied by real worker pods:")
    workers = re.findall(r"^\s+copy\[\d+\]\s+success\s+worker (w\d+): (\d+) rows$", out, re.M)
    assert workers, f"no copy task reported a worker result:\n{out[-4000:]}"
    assert len({w for w, _ in workers}) == len(workers)
    assert sum(int(rows) for _, rows in workers) == sum(p.source_rows for p in copied.values())
    for table, p in copied.items():
        assert p.source_rows > 0 and p.target_rows == p.source_rows, (table, p)
        assert p.source_checksum == p.target_checksum, (table, p)

    # Streaming ran: the live changes reached the target (orders +500 -50, customers updated).
    streamed = printed_table(out, "after streaming:")
    assert streamed["public.orders"].target_rows == copied["public.orders"].target_rows + 450
    assert streamed["public.customers"].target_checksum != copied["public.customers"].target_checksum
    assert streamed["public.products"] == copied["public.products"]
    for table, p in streamed.items():
        assert (p.target_rows, p.target_checksum) == (p.source_rows, p.source_checksum), (table, p)

    # The printed checksums are the databases' own, measured again now, and an independent
    # fingerprint agrees that target equals source.
    server = ensure_server(STATE_DIR / "pg")
    source, target = server.dsn(SOURCE_DB), server.dsn(TARGET_DB)
    now = {
        r.table: (r.source_rows, r.target_rows, r.source_checksum, r.target_checksum)
        for r in compare_tables(source_dsn=source, target_dsn=target, tables=TABLES, level="checksum")
    }
    assert now == {
        t: (p.source_rows, p.target_rows, p.source_checksum, p.target_checksum) for t, p in streamed.items()
    }
    for table in TABLES:
        assert fingerprint(source, table) == fingerprint(target, table), table
