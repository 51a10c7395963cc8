"""The worker's public contract: the only part of ``zdtp_worker`` the Airflow side may import.

- :mod:`.spec` — the WorkerSpec a planner builds and a worker validates;
- :mod:`.errors` — exit codes (sysexits) and the error types that carry them;
- :mod:`.result` — the JSON summary a worker leaves in its termination log;
- :mod:`.envelope` — env vars, mounted paths and command-line arguments around the spec.

Everything else of ``zdtp_worker`` is private to the container (it needs asyncpg/psycopg2).
This package depends on pydantic and the standard library only.
"""
