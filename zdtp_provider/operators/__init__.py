"""Operators: resolve Airflow inputs, render with zdtp_provider.workload, apply, wait or defer, report."""
