"""``zdtp.verify_log``: one row per ``verify`` of a run, in the target's state schema.

``zdtp status`` shows the last row per task, teardown deletes a task's rows; keep the column names.
Driver-free (the DDL is created by the full-sync worker's bootstrap, asyncpg, and by
:mod:`.verify` before it writes, psycopg 3).
"""

from __future__ import annotations

DDL = """
CREATE TABLE IF NOT EXISTS zdtp.verify_log (
    task text NOT NULL,
    run_id text NOT NULL,
    verified_at timestamptz NOT NULL DEFAULT now(),
    level text NOT NULL,
    ok boolean NOT NULL,
    detail jsonb
);
CREATE INDEX IF NOT EXISTS verify_log_task ON zdtp.verify_log (task, verified_at);
"""
