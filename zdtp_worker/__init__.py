"""zdtp's container side: the sync worker. Never imports Airflow (it runs in a slim image)."""

__version__ = "0.1.0"
