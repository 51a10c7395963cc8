"""ZdtpKubeOperator: base of zdtp's own (non-KPO) operators and sensor — the cluster connection,
the hook, trigger wiring, and the KPO pod arguments of the workloads they build.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
from airflow.sdk import BaseOperator

from zdtp_provider.hooks.connection import KubeConnection
from zdtp_provider.hooks.kubernetes import ZdtpKubernetesHook
from zdtp_provider.k8s.names import validate_dns_label
from zdtp_provider.operators._inputs import as_airflow_error
from zdtp_provider.workload import PodArguments, take_pod_arguments

# KPO's templated pod arguments, templated here too.
POD_TEMPLATE_FIELDS = (
    "image",
    "labels",
    "annotations",
    "env_vars",
    "container_resources",
    "volumes",
    "volume_mounts",
    "node_selector",
    "pod_template_file",
    "source_conn_id",
    "target_conn_id",
    "credentials_secret",
)


class ZdtpKubeOperator(BaseOperator):
    """Holds the ``kubernetes`` connection settings (one :class:`KubeConnection`) and builds hook
    and trigger arguments from them."""

    template_fields: Sequence[str] = ("namespace", "kubernetes_conn_id")

    def __init__(
        self,
        *,
        namespace: str | None = None,
        kubernetes_conn_id: str | None = KubernetesHook.default_conn_name,
        config_file: str | None = None,
        cluster_context: str | None = None,
        in_cluster: bool | None = None,
        poll_interval: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id
        self.config_file = config_file
        self.cluster_context = cluster_context
        self.in_cluster = in_cluster
        self.poll_interval = poll_interval
        self._killed = False

    @property
    def connection(self) -> KubeConnection:
        return KubeConnection(
            conn_id=self.kubernetes_conn_id,
            config_file=self.config_file,
            cluster_context=self.cluster_context,
            in_cluster=self.in_cluster,
        )

    @cached_property
    def hook(self) -> ZdtpKubernetesHook:
        return self.connection.hook()

    def resolved_namespace(self) -> str:
        namespace = self.namespace or self.hook.get_namespace() or "default"
        with as_airflow_error():
            return validate_dns_label(namespace, field="namespace")

    def trigger_kwargs(self, *, name: str, namespace: str) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": namespace,
            "connection": self.connection.resolved(self.hook),
            "poll_interval": self.poll_interval,
        }

    def owner_key(self, context: Any) -> str:
        """Identity of this task instance (not the try): dag, task and map index."""
        ti = context["ti"]
        return f"{ti.dag_id}.{ti.task_id}.{getattr(ti, 'map_index', -1)}"


def pop_pod_arguments(op: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take the KPO pod arguments out of ``kwargs`` (before ``BaseOperator.__init__`` sees them).

    An unsupported argument raises here, at DAG parse, naming it.
    """
    with as_airflow_error():
        return take_pod_arguments(kwargs, operator=type(op).__name__)


def set_pod_arguments(op: Any, given: dict[str, Any]) -> None:
    """Store every pod argument as ``op``'s attribute of the same name (templating reads them)."""
    defaults = PodArguments()
    for name in PodArguments.names():
        setattr(op, name, given.get(name, getattr(defaults, name)))
