"""One bad sync file must not hide the others: checked through Airflow's own CLI and metadata DB.

``dags/syncs`` here holds two valid files and one bad one (plus, in the second test, two files
declaring the same task name). After ``airflow dags reserialize`` (what the DAG processor does),
``airflow dags list`` (read from the DB) shows both valid DAGs, not stale, and a placeholder DAG
whose description names the bad file, field and value; ``zdtp_syncs.py`` has no import error
(an import error would mark every DAG of that file stale). Running the placeholder fails with
the same message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from devtools.airflow_home import REPO
from tests.e2e.conftest import _DagsTestServer

pytestmark = [pytest.mark.airflow]

EXAMPLE = yaml.safe_load((REPO / "dags" / "syncs" / "shop.yaml").read_text())


@pytest.fixture(scope="module")
def cli(airflow_home: Path) -> Iterator[_DagsTestServer]:
    """One Airflow process runs this module's seven CLI commands (the CLI's own code path, each
    with its own env), so Airflow's start-up is paid once, not per command."""
    server = _DagsTestServer(dict(os.environ))
    yield server
    server.close()


def _airflow(cli: _DagsTestServer, *args: str, syncs: Path, ok: tuple[int, ...] = (0,)) -> str:
    """``airflow <args>``: its stdout and stderr, in one text."""
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "ZDTP_SYNCS_DIR": str(syncs)}
    code, output, _ = cli.run(list(args), 300, env)
    assert code in ok, output[-3000:]
    return output


def _json(stdout: str) -> list[dict]:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("["):
            return json.loads(line)
    if "No data found" in stdout:
        return []
    raise AssertionError(f"no JSON in CLI output: {stdout[-1000:]}")


def _write(folder: Path, file: str, **overrides) -> Path:
    path = folder / file
    path.write_text(yaml.safe_dump({**EXAMPLE, **overrides}))
    return path


def _listed(cli: _DagsTestServer, syncs: Path) -> dict[str, dict]:
    reserialize = _airflow(cli, "dags", "reserialize", syncs=syncs)
    listed = _airflow(
        cli, "dags", "list", "-o", "json", "--columns", "dag_id,description,is_stale", syncs=syncs
    )
    rows = {r["dag_id"]: r for r in _json(listed)}
    assert rows, reserialize[-3000:]
    return rows


def _import_errors(cli: _DagsTestServer, syncs: Path) -> list[dict]:
    out = _airflow(cli, "dags", "list-import-errors", "-o", "json", syncs=syncs, ok=(0, 1))
    return [e for e in _json(out) if e["filepath"].endswith("zdtp_syncs.py")]


def test_bad_file_becomes_a_placeholder_and_the_valid_dags_stay(cli: _DagsTestServer, tmp_path: Path) -> None:
    _write(tmp_path, "iso-one.yaml", name="iso-one")
    _write(tmp_path, "iso-two.yaml", name="iso-two", mode="incremental")
    bad = _write(tmp_path, "iso-bad.yaml", name="iso-bad", workers=0)

    dags = _listed(cli, tmp_path)
    for dag_id in ("zdtp_iso_one", "zdtp_iso_two"):
        assert dag_id in dags, sorted(dags)
        assert str(dags[dag_id]["is_stale"]) in ("False", "false", "None"), dags[dag_id]
    placeholder = dags.get("zdtp-invalid-iso-bad")
    assert placeholder is not None, sorted(dags)
    text = placeholder["description"]
    assert str(bad) in text and "workers = 0" in text and "greater than or equal to 1" in text, text
    assert "zdtp_iso_bad" not in dags
    assert _import_errors(cli, tmp_path) == []

    # The placeholder's task fails with the message (a run shows the problem, never does work).
    output = _airflow(cli, "dags", "test", "zdtp-invalid-iso-bad", syncs=tmp_path, ok=(0, 1))
    assert "workers = 0" in output and "failed" in output.lower(), output[-3000:]


def test_duplicate_task_names_are_an_error_naming_both_files(cli: _DagsTestServer, tmp_path: Path) -> None:
    first = _write(tmp_path, "dup-a.yaml", name="iso-dup")
    second = _write(tmp_path, "dup-b.yaml", name="iso-dup")
    _write(tmp_path, "iso-ok.yaml", name="iso-ok")

    dags = _listed(cli, tmp_path)
    assert "zdtp_iso_ok" in dags, sorted(dags)
    assert "zdtp_iso_dup" not in dags or str(dags["zdtp_iso_dup"]["is_stale"]).lower() == "true"
    for me, other in ((first, second), (second, first)):
        text = dags[f"zdtp-invalid-{me.stem}"]["description"]
        assert str(me) in text and str(other) in text and "iso-dup" in text, text
    assert _import_errors(cli, tmp_path) == []
