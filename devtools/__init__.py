"""Development-only helpers (not shipped in the wheel): the dev Kubernetes cluster, the test
PostgreSQL server and a throwaway Airflow home. Used by the pytest fixtures and by ``make demo``."""
