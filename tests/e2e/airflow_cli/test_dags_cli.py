"""``dags/zdtp_syncs.py`` through Airflow's own CLI: import errors and parse time.

Each check is one ``airflow`` subprocess against the session's migrated Airflow home (SQLite),
with ``DAGS_FOLDER`` = the repo's ``dags/`` and ``ZDTP_SYNCS_DIR`` chosen per test. Nothing here
needs the cluster or Postgres: parsing must not touch either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from devtools.airflow_home import REPO

pytestmark = [pytest.mark.airflow]

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
EXAMPLES = REPO / "dags" / "syncs"
PER_DAG_BUDGET = 0.5  # s of parse time each additional sync DAG may add


def _airflow(*args: str, syncs: Path, ok: tuple[int, ...] = (0,)) -> str:
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "ZDTP_SYNCS_DIR": str(syncs)}
    proc = subprocess.run(
        [AIRFLOW, *args, "-o", "json"], env=env, capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert proc.returncode in ok, (proc.stdout + proc.stderr)[-2000:]
    return proc.stdout


def _json(stdout: str) -> list[dict]:
    # Warnings (graphviz...) may precede the table; the JSON document is the last line that parses.
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("["):
            return json.loads(line)
    if "No data found" in stdout:
        return []
    raise AssertionError(f"no JSON in CLI output: {stdout[-1000:]}")


def _report(syncs: Path) -> dict:
    rows = [r for r in _json(_airflow("dags", "report", syncs=syncs)) if r["file"].endswith("zdtp_syncs.py")]
    assert len(rows) == 1, rows
    row = rows[0]
    seconds = row["duration"]
    if isinstance(seconds, str):  # "0:00:03.123456"
        h, m, s = seconds.split(":")
        seconds = int(h) * 3600 + int(m) * 60 + float(s)
    return {
        "dags": int(row["dag_num"]),
        "seconds": float(seconds),
        "errors": int(row.get("import_errors", 0)),
    }


def test_examples_have_no_import_errors(airflow_home: Path) -> None:
    assert _json(_airflow("dags", "list-import-errors", "--local", syncs=EXAMPLES)) == []


PARSE_PROBE = """
import json, os, runpy, sys, time
path, dirs = sys.argv[1], sys.argv[2:]
def parse(d):
    os.environ["ZDTP_SYNCS_DIR"] = d
    w, c = time.perf_counter(), time.process_time()
    n = sum(1 for v in runpy.run_path(path).values() if type(v).__name__ == "DAG")
    return n, time.perf_counter() - w, time.process_time() - c
n, wall, cpu = parse(dirs[0])
out = {"cold": {"dags": n, "wall": wall, "cpu": cpu}}
for d in dirs:
    runs = [parse(d) for _ in range(3)]
    out[d] = {"dags": runs[0][0], "wall": min(r[1] for r in runs), "cpu": min(r[2] for r in runs)}
print("PARSE " + json.dumps(out))
"""


def test_parse_time_per_sync_dag(airflow_home: Path, tmp_path: Path) -> None:
    """Parse cost of ``zdtp_syncs.py``: ``airflow dags report`` for the examples (printed), and
    in one process the cold parse (imports included) and warm re-parses of 4 and 16 sync files.

    The cold parse is dominated by importing Airflow's Kubernetes provider and the kubernetes /
    kubernetes_asyncio clients (seconds on two cores, paid once per parsing process); the
    per-sync-DAG cost is the warm parse divided by the DAG count, held to <= 0.5 s of CPU time
    (CPU, not wall: this machine is shared and its wall times swing several-fold).
    """
    examples = sorted(EXAMPLES.glob("*.yaml"))
    report = _report(EXAMPLES)
    assert report == {**report, "dags": len(examples), "errors": 0}
    many = tmp_path / "many"
    many.mkdir()
    for copy in range(4):
        for path in examples:
            body = yaml.safe_load(path.read_text())
            (many / f"{copy}-{path.name}").write_text(
                yaml.safe_dump({**body, "name": f"{body['name']}-{copy}"})
            )
    proc = subprocess.run(
        [sys.executable, "-c", PARSE_PROBE, str(REPO / "dags" / "zdtp_syncs.py"), str(EXAMPLES), str(many)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("PARSE ")), None)
    assert line, (proc.stdout + proc.stderr)[-2000:]
    out = json.loads(line.removeprefix("PARSE "))
    few, lots = out[str(EXAMPLES)], out[str(many)]
    assert (few["dags"], lots["dags"]) == (len(examples), 4 * len(examples))
    per_dag = lots["cpu"] / lots["dags"]
    print(
        f"\nairflow dags report: zdtp_syncs.py {report['dags']} DAGs in {report['seconds']:.2f} s"
        f"\ncold parse (imports included): {out['cold']['cpu']:.2f} s CPU, {out['cold']['wall']:.2f} s wall"
        f"\nwarm parse: {few['dags']} DAGs {few['cpu']:.3f} s CPU ({few['wall']:.3f} s wall), "
        f"{lots['dags']} DAGs {lots['cpu']:.3f} s CPU ({lots['wall']:.3f} s wall)"
        f" -> {per_dag * 1000:.0f} ms CPU per sync DAG"
    )
    assert per_dag <= PER_DAG_BUDGET
