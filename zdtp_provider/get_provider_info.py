"""Provider metadata read by Airflow's provider discovery (entry point ``apache_airflow_provider``).

``package-name`` must equal the distribution name or discovery rejects it. The ``kubernetes``
connection type is deliberately not registered again: it belongs to cncf-kubernetes.
"""

from __future__ import annotations

from typing import Any

from zdtp_provider import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "zdtp",
        "name": "zdtp",
        "description": "Data-synchronisation workers on Kubernetes: full-sync Pods/Jobs and "
        "incremental-sync Deployments.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "zdtp",
                "external-doc-url": "https://github.com/zdtp/zdtp",
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": "zdtp",
                "python-modules": [
                    "zdtp_provider.operators.full",
                    "zdtp_provider.operators.job",
                    "zdtp_provider.operators.incremental",
                    "zdtp_provider.operators.teardown",
                    "zdtp_provider.operators.cronjob",
                ],
            }
        ],
        "extra-links": ["zdtp_provider.links.WorkerObjectLink"],
        "sensors": [
            {
                "integration-name": "zdtp",
                "python-modules": ["zdtp_provider.sensors.incremental", "zdtp_provider.sensors.cronjob"],
            }
        ],
        "hooks": [{"integration-name": "zdtp", "python-modules": ["zdtp_provider.hooks.kubernetes"]}],
        "triggers": [
            {
                "integration-name": "zdtp",
                "python-modules": [
                    "zdtp_provider.triggers.job",
                    "zdtp_provider.triggers.deployment",
                    "zdtp_provider.triggers.settle",
                ],
            }
        ],
    }
