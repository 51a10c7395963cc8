"""Base of zdtp's own (non-KPO) operators: connection, hook and trigger wiring in one place."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
from airflow.sdk import BaseOperator

from zdtp_provider.hooks.kubernetes import ZdtpKubernetesHook
from zdtp_provider.k8s.names import validate_dns_label
from zdtp_provider.operators._common import check


class ZdtpBaseOperator(BaseOperator):
    """Holds the ``kubernetes`` connection settings and builds hook/trigger arguments from them."""

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

    @cached_property
    def hook(self) -> ZdtpKubernetesHook:
        return ZdtpKubernetesHook(
            conn_id=self.kubernetes_conn_id,
            config_file=self.config_file,
            cluster_context=self.cluster_context,
            in_cluster=self.in_cluster,
        )

    def resolved_namespace(self) -> str:
        namespace = self.namespace or self.hook.get_namespace() or "default"
        return check(validate_dns_label, namespace, field="namespace")

    def trigger_kwargs(self, *, name: str, namespace: str) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": namespace,
            "kubernetes_conn_id": self.kubernetes_conn_id,
            "connection_extras": dict(self.hook.conn_extras),
            "config_file": self.config_file,
            "cluster_context": self.cluster_context,
            "in_cluster": self.in_cluster,
            "poll_interval": self.poll_interval,
        }

    def owner_key(self, context: Any) -> str:
        """Identity of this task instance (not the try): dag, task and map index."""
        ti = context["ti"]
        return f"{ti.dag_id}.{ti.task_id}.{getattr(ti, 'map_index', -1)}"
