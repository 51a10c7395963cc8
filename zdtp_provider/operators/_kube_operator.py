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


class PodArgumentsMixin(BaseOperator):
    """KubernetesPodOperator's pod arguments as explicit keyword parameters, stored as attributes
    of the same names (templating and :meth:`WorkloadOptions.from_operator` read them).

    Explicit, not ``**kwargs``: Airflow validates ``.partial()``/``.expand()`` arguments against the
    ``__init__`` signatures of the class hierarchy. Deprecated zdtp spellings are translated with a
    DeprecationWarning; KPO arguments zdtp cannot honour raise here, at DAG parse, naming them.
    """

    def __init__(
        self,
        *,
        container_resources: Any = None,
        image_pull_policy: str | None = None,
        affinity: Any = None,
        tolerations: Any = None,
        node_selector: Any = None,
        image_pull_secrets: Any = None,
        env_vars: Any = None,
        env_from: Any = None,
        volumes: Any = None,
        volume_mounts: Any = None,
        init_containers: Any = None,
        priority_class_name: str | None = None,
        hostnetwork: bool = False,
        service_account_name: str | None = None,
        labels: Any = None,
        annotations: Any = None,
        termination_grace_period: int | None = None,
        runtime_class_name: str | None = None,
        schedulername: str | None = None,
        dnspolicy: str | None = None,
        pod_template_file: str | None = None,
        pod_template_dict: Any = None,
        full_pod_spec: Any = None,
        worker_resources: Any = None,
        host_network: bool | None = None,
        **kwargs: Any,
    ) -> None:
        params = dict(locals())
        given = {k: params[k] for k in PodArguments.names()}
        aliases = {"worker_resources": worker_resources, "host_network": host_network}
        given.update({k: v for k, v in aliases.items() if v is not None})
        with as_airflow_error():
            pod = take_pod_arguments({**given, **kwargs}, operator=type(self).__name__)
        super().__init__(**kwargs)
        for name in PodArguments.names():
            setattr(self, name, pod.get(name))
