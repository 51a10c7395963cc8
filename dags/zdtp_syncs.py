"""One Airflow DAG per sync-task file in ``dags/syncs/*.yaml`` (DAG id ``zdtp_<name>``).

Parsing reads only these files: no database, connection or Kubernetes access. A file that does
not validate makes this module fail to import with every bad file, field and value named, so
``airflow dags list-import-errors`` (and the UI) show exactly what to fix; run
``zdtp validate FILE`` before committing a change to catch it earlier.
"""

from __future__ import annotations

import os
from pathlib import Path

from zdtp_provider.config import ConfigError, load_config
from zdtp_provider.dag_factory import build_dag

SYNCS_DIR = Path(os.environ.get("ZDTP_SYNCS_DIR", Path(__file__).with_name("syncs")))

_errors: list[str] = []
for _path in sorted(SYNCS_DIR.glob("*.y*ml")):
    try:
        _config = load_config(_path)
    except ConfigError as exc:
        _errors.append(str(exc))
        continue
    globals()[_config.dag_id] = build_dag(_config, source_file=_path)

if _errors:
    raise ConfigError("invalid zdtp sync task file(s): " + " || ".join(_errors))
