"""WorkloadError: bad input to a workload build, raised before anything touches the cluster.

A plain ``ValueError`` (no Airflow import), whose message starts with the argument or field it
names (``labels: ...``, ``spec.task: ...``), so an operator can surface it unchanged and the CLI
can print it as one line.
"""

from __future__ import annotations


class WorkloadError(ValueError):
    """A workload cannot be built from these inputs; ``str()`` starts with the field name."""
