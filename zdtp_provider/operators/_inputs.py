"""Airflow-side inputs of zdtp operators: defaults read from Airflow's config, connection
look-ups, and the one place where a build error becomes an Airflow error.

Everything here runs before the first API call, so bad input fails the task with an
AirflowException naming the argument and leaves zero objects in the cluster.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from airflow.sdk.exceptions import AirflowException

from zdtp_provider.connections import resolve_dsns
from zdtp_provider.k8s.secret import TLS_DIR
from zdtp_provider.workload import WorkloadOptions


def default_deferrable() -> bool:
    """``[operators] default_deferrable``, like every official provider's operators."""
    from airflow.configuration import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)


@contextlib.contextmanager
def as_airflow_error() -> Iterator[None]:
    """Re-raise a build error (a ValueError naming its field) as an AirflowException, unchanged."""
    try:
        yield
    except AirflowException:
        raise
    except ValueError as exc:
        raise AirflowException(str(exc)) from None


def lookup_dsns(options: WorkloadOptions, *, lookup: bool = True) -> dict[str, str]:
    """DSNs for a new credentials Secret, from the Airflow connections the options name.

    Empty when credentials come from a user Secret (or nowhere), or when ``lookup`` is off: dry
    runs must not read passwords.
    """
    creds = options.credentials
    with as_airflow_error():
        if creds.kind != "connections" or not lookup:
            return {}
    return resolve_dsns(
        source_conn_id=creds.source_conn_id,
        target_conn_id=creds.target_conn_id,
        sslmode=creds.sslmode,
        tls_dir=TLS_DIR if creds.tls_secret else None,
    )
