"""One Airflow DAG per sync-task file in ``dags/syncs/*.yaml`` (DAG id ``zdtp_<name>``).

Parsing reads only these files: no database, connection or Kubernetes access. Each file stands
alone: a file that does not validate (or repeats another file's task ``name``) becomes a paused
placeholder DAG ``zdtp-invalid-<file>`` whose description names the file, field and value and
whose one task fails with that message, while every valid file's DAG stays (see
``zdtp_provider.sync_files`` for why this is not an import error). Run ``zdtp validate FILE``
before committing a change to catch it earlier.
"""

from __future__ import annotations

import os
from pathlib import Path

from zdtp_provider.dag_factory import build_dag
from zdtp_provider.sync_files import build_dags

SYNCS_DIR = Path(os.environ.get("ZDTP_SYNCS_DIR", Path(__file__).with_name("syncs")))

globals().update(build_dags(SYNCS_DIR, build=build_dag))
