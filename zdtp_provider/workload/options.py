"""WorkloadOptions: everything about a worker workload that is not its WorkerSpec, frozen.

Built from operator arguments (:meth:`WorkloadOptions.from_kwargs`) — and a sync-task config
becomes operator arguments through :func:`config_kwargs`, so the DAG factory, ``zdtp render`` and
the operators all arrive at the same object by the same path. Validation here is pure and names
the argument; connection look-ups happen later, in the operator (or the CLI).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zdtp_provider.config import SyncTaskConfig
from zdtp_provider.k8s.names import validate_annotations, validate_dns_label, validate_labels
from zdtp_provider.k8s.pod import CredentialsSource
from zdtp_provider.workload.errors import WorkloadError
from zdtp_provider.workload.pod_args import PodArguments


@dataclass(frozen=True)
class CredentialsChoice:
    """Where the worker's DSNs come from: Airflow connections, a user Secret, or nowhere."""

    source_conn_id: str | None = None
    target_conn_id: str | None = None
    credentials_secret: str | None = None
    credentials_keys: Mapping[str, str] | None = None
    # libpq sslmode forced on both connections, and a Secret of CA/client cert files the
    # connections' sslrootcert/sslcert/sslkey name (mounted into the worker).
    sslmode: str | None = None
    tls_secret: str | None = None

    @property
    def kind(self) -> str:
        """``"connections"``, ``"secret"`` or ``"none"``; both at once is ambiguous and refused."""
        from_conns = bool(self.source_conn_id or self.target_conn_id)
        if from_conns and self.credentials_secret:
            raise WorkloadError(
                "credentials_secret: give either source_conn_id/target_conn_id or credentials_secret,"
                " not both"
            )
        if self.credentials_secret:
            validate_dns_label(self.credentials_secret, field="credentials_secret")
            if self.credentials_keys and set(self.credentials_keys) - {"source", "target", "queue"}:
                raise WorkloadError("credentials_keys: keys must be 'source', 'target' and/or 'queue'")
            return "secret"
        return "connections" if from_conns else "none"

    def user_secret(self) -> CredentialsSource | None:
        if self.kind != "secret":
            return None
        keys = dict(self.credentials_keys) if self.credentials_keys else None
        return CredentialsSource(secret_name=self.credentials_secret, keys=keys)  # type: ignore[arg-type]


@dataclass(frozen=True)
class WorkloadOptions:
    image: str
    namespace: str | None = None
    pod: PodArguments = field(default_factory=PodArguments)
    credentials: CredentialsChoice = field(default_factory=CredentialsChoice)

    def validate(self) -> WorkloadOptions:
        """Check image, namespace, labels, annotations and the credentials choice."""
        if not self.image or not isinstance(self.image, str) or not self.image.strip():
            raise WorkloadError("image: a worker image is required")
        if self.namespace is not None:
            validate_dns_label(self.namespace, field="namespace")
        validate_labels(dict(self.pod.labels or {}), field="labels")
        validate_annotations(dict(self.pod.annotations or {}), field="annotations")
        _ = self.credentials.kind
        if self.credentials.tls_secret is not None:
            validate_dns_label(self.credentials.tls_secret, field="tls_secret")
        return self

    @classmethod
    def from_kwargs(
        cls,
        *,
        image: str,
        namespace: str | None = None,
        source_conn_id: str | None = None,
        target_conn_id: str | None = None,
        credentials_secret: str | None = None,
        credentials_keys: Mapping[str, str] | None = None,
        sslmode: str | None = None,
        tls_secret: str | None = None,
        **pod: Any,
    ) -> WorkloadOptions:
        unknown = set(pod) - set(PodArguments.names())
        if unknown:
            raise WorkloadError(f"{sorted(unknown)[0]}: not a zdtp workload argument")
        return cls(
            image=image,
            namespace=namespace,
            pod=PodArguments(**pod),
            credentials=CredentialsChoice(
                source_conn_id=source_conn_id,
                target_conn_id=target_conn_id,
                credentials_secret=credentials_secret,
                credentials_keys=dict(credentials_keys) if credentials_keys else None,
                sslmode=sslmode,
                tls_secret=tls_secret,
            ),
        )

    @classmethod
    def from_operator(cls, op: Any) -> WorkloadOptions:
        """From an operator's rendered attributes (the same names as its arguments)."""
        return cls(
            image=op.image,
            namespace=op.namespace,
            pod=PodArguments.from_object(op),
            credentials=CredentialsChoice(
                source_conn_id=op.source_conn_id,
                target_conn_id=op.target_conn_id,
                credentials_secret=op.credentials_secret,
                credentials_keys=op.credentials_keys,
                sslmode=getattr(op, "sslmode", None),
                tls_secret=getattr(op, "tls_secret", None),
            ),
        )


def config_kwargs(config: SyncTaskConfig) -> dict[str, Any]:
    """Operator arguments (KPO spellings) for a sync task's workers; shared by DAG and CLI."""
    pod = config.pod
    kwargs: dict[str, Any] = {
        "namespace": config.namespace,
        "image": config.image,
        "kubernetes_conn_id": config.kubernetes_conn_id,
        "source_conn_id": config.source_conn_id,
        "target_conn_id": config.target_conn_id,
        "container_resources": {
            "requests": dict(config.resources.requests),
            "limits": dict(config.resources.limits),
        },
        "annotations": dict(pod.annotations),
    }
    if pod.node_selector:
        kwargs["node_selector"] = dict(pod.node_selector)
    if pod.tolerations:
        kwargs["tolerations"] = [t.model_dump(exclude_none=True) for t in pod.tolerations]
    if pod.service_account:
        kwargs["service_account_name"] = pod.service_account
    if pod.host_network:
        kwargs["hostnetwork"] = True
    if config.sslmode:
        kwargs["sslmode"] = config.sslmode
    if config.tls_secret:
        kwargs["tls_secret"] = config.tls_secret
    return kwargs


def options_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of operator arguments that make up WorkloadOptions (drops connection ids etc.)."""
    keep = {*PodArguments.names(), "image", "namespace", "source_conn_id", "target_conn_id"}
    keep |= {"credentials_secret", "credentials_keys", "sslmode", "tls_secret"}
    return {k: v for k, v in kwargs.items() if k in keep}
