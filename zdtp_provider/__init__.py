"""zdtp's Airflow side: operators, triggers and DAG helpers that run sync workers on Kubernetes."""

__version__ = "0.1.0"
