"""A folder of sync-task files → one DAG per valid file, one failing placeholder DAG per bad file.

Why placeholders and not an import error: Airflow keys import errors by the Python file that
raised, and marks *every* DAG of that file stale when it has one. ``dags/zdtp_syncs.py`` builds all
zdtp DAGs, so one bad YAML file would hide every sync task — including those managing running
streams. Instead each bad file becomes its own DAG ``zdtp-invalid-<file stem>`` (a dash, which no
real zdtp DAG id contains): its description and docs carry the error (file, field, value) for
the DAG list, and its one task fails with the same message, while every valid file's DAG stays.

Two files declaring the same task ``name`` are both errors naming both files: neither gets the
DAG, so a copied file cannot silently take over another file's task.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from zdtp_provider.config import ConfigError, SyncTaskConfig, load_config

PLACEHOLDER_PREFIX = "zdtp-invalid-"
PLACEHOLDER_TAG = "zdtp:invalid"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class SyncFiles:
    """What a folder holds: valid configs by file, and one error message per bad file."""

    valid: dict[Path, SyncTaskConfig] = field(default_factory=dict)
    errors: dict[Path, str] = field(default_factory=dict)


def sync_file_paths(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.y*ml") if p.suffix in (".yaml", ".yml") and p.is_file())


def load_folder(folder: Path) -> SyncFiles:
    """Validate every file on its own; then refuse task names used by more than one file."""
    found = SyncFiles()
    for path in sync_file_paths(folder):
        try:
            found.valid[path] = load_config(path)
        except ConfigError as exc:
            found.errors[path] = str(exc)
    by_name: dict[str, list[Path]] = defaultdict(list)
    for path, config in found.valid.items():
        by_name[config.name].append(path)
    for name, paths in by_name.items():
        if len(paths) < 2:
            continue
        for path in paths:
            others = ", ".join(str(p) for p in paths if p != path)
            found.errors[path] = (
                f"{path}: name = {name!r}: also declared by {others}; task names must be unique "
                "(neither file gets the DAG until one is renamed)"
            )
            del found.valid[path]
    return found


def placeholder_dag_id(path: Path) -> str:
    return PLACEHOLDER_PREFIX + (_UNSAFE.sub("_", path.stem) or "_")


def placeholder_dag(path: Path, message: str):
    """A DAG that shows ``message`` in the DAG list and fails its one task with it."""
    from airflow.sdk import DAG, task
    from airflow.sdk.exceptions import AirflowFailException

    from zdtp_provider.dag_factory import START_DATE

    dag = DAG(
        dag_id=placeholder_dag_id(path),
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        tags=["zdtp", PLACEHOLDER_TAG],
        description=f"INVALID zdtp sync task file: {message}"[:2000],
        doc_md=f"### Invalid zdtp sync task file\n\n`{path}`\n\n```\n{message}\n```\n\n"
        f"Fix the file (check it with `zdtp validate {path}`); this DAG then disappears.",
        is_paused_upon_creation=True,
    )
    with dag:

        @task(task_id="config_error")
        def config_error() -> None:
            raise AirflowFailException(message)

        config_error()
    return dag


def build_dags(folder: Path, *, build: Callable[..., object]) -> dict[str, object]:
    """DAG id → DAG for every file in ``folder``: ``build(config, source_file=path)`` for valid
    files, a placeholder for bad ones (and for a valid file whose DAG fails to build)."""
    found = load_folder(folder)
    dags: dict[str, object] = {}
    for path, config in found.valid.items():
        try:
            dags[config.dag_id] = build(config, source_file=path)
        except Exception as exc:  # one file's bug must not take the others down
            found.errors[path] = f"{path}: cannot build the DAG: {type(exc).__name__}: {exc}"
    for path, message in _sorted(found.errors.items()):
        dags[placeholder_dag_id(path)] = placeholder_dag(path, message)
    return dags


def _sorted(items: Iterable[tuple[Path, str]]) -> list[tuple[Path, str]]:
    return sorted(items, key=lambda item: item[0])
