"""Input handling shared by zdtp operators: WorkerSpec coercion and up-front validation.

Everything here runs before the first API call, so bad input fails the task with an
AirflowException naming the argument and leaves zero objects in the cluster.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow.sdk.exceptions import AirflowException
from kubernetes.client import V1Toleration
from pydantic import ValidationError

from zdtp_provider.connections import resolve_dsns
from zdtp_provider.k8s.names import InvalidName, validate_annotations, validate_dns_label, validate_labels
from zdtp_provider.k8s.pod import CredentialsSource
from zdtp_worker.contract.spec import WorkerSpec

SpecInput = WorkerSpec | Mapping[str, Any] | str


def resolve_spec(spec: SpecInput, *, mode: str, run_id: str | None, field: str = "spec") -> WorkerSpec:
    """A validated WorkerSpec from a model, dict or JSON string; ``run_id`` fills a missing one.

    Defaulting the run id to Airflow's keeps a retry of the same DAG run resuming the same copy
    (the worker keys its checkpoints on it), while a new DAG run starts fresh.
    """
    if isinstance(spec, WorkerSpec):
        data: Any = spec.model_dump(by_alias=True)
    elif isinstance(spec, str):
        try:
            data = json.loads(spec)
        except ValueError as exc:
            raise AirflowException(f"{field}: not valid JSON: {exc}") from None
    elif isinstance(spec, Mapping):
        data = dict(spec)
    else:
        raise AirflowException(
            f"{field}: expected a WorkerSpec, dict or JSON string, got {type(spec).__name__}"
        )
    if not isinstance(data, dict):
        raise AirflowException(f"{field}: expected a JSON object")
    data.setdefault("mode", mode)
    if run_id and not data.get("run_id"):
        data["run_id"] = run_id
    try:
        parsed = WorkerSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise AirflowException(
            f"{field}.{where}: {first['msg']}" if where else f"{field}: {first['msg']}"
        ) from None
    if parsed.mode != mode:
        raise AirflowException(
            f"{field}.mode: this operator runs {mode!r} workers, the spec says {parsed.mode!r}"
        )
    return parsed


def check(fn, *args, **kwargs):
    """Run a k8s.names validator / builder, re-raising its ValueError as an AirflowException."""
    try:
        return fn(*args, **kwargs)
    except InvalidName as exc:
        raise AirflowException(str(exc)) from None
    except ValueError as exc:
        raise AirflowException(str(exc)) from None


def validate_common(
    *,
    namespace: str | None,
    image: str | None,
    labels: Mapping[str, str] | None,
    annotations: Mapping[str, str] | None,
    name: str | None = None,
) -> None:
    if not image or not isinstance(image, str) or not image.strip():
        raise AirflowException("image: a worker image is required")
    if namespace is not None:
        check(validate_dns_label, namespace, field="namespace")
    if name is not None:
        check(validate_dns_label, name, field="name")
    check(validate_labels, dict(labels or {}), field="labels")
    check(validate_annotations, dict(annotations or {}), field="annotations")


def credentials_choice(
    *,
    source_conn_id: str | None,
    target_conn_id: str | None,
    credentials_secret: str | None,
    credentials_keys: Mapping[str, str] | None,
) -> str:
    """``"connections"``, ``"secret"`` or ``"none"``; both at once is ambiguous and refused."""
    from_conns = bool(source_conn_id or target_conn_id)
    if from_conns and credentials_secret:
        raise AirflowException(
            "credentials_secret: give either source_conn_id/target_conn_id or credentials_secret, not both"
        )
    if credentials_secret:
        check(validate_dns_label, credentials_secret, field="credentials_secret")
        if credentials_keys and set(credentials_keys) - {"source", "target"}:
            raise AirflowException("credentials_keys: keys must be 'source' and/or 'target'")
        return "secret"
    return "connections" if from_conns else "none"


def user_secret_source(secret: str, keys: Mapping[str, str] | None) -> CredentialsSource:
    return CredentialsSource(secret_name=secret, keys=dict(keys) if keys else None)


@dataclass(frozen=True)
class Credentials:
    """What ``workload_inputs`` needs: DSNs for a new Secret, or the user's existing Secret."""

    dsns: dict[str, str]
    user_secret: CredentialsSource | None


def resolve_credentials(
    *,
    source_conn_id: str | None,
    target_conn_id: str | None,
    credentials_secret: str | None,
    credentials_keys: Mapping[str, str] | None,
    lookup: bool = True,
) -> Credentials:
    """Validate the credentials arguments; look the connections up unless ``lookup`` is off
    (dry runs and ``zdtp render`` must not read passwords)."""
    mode = credentials_choice(
        source_conn_id=source_conn_id,
        target_conn_id=target_conn_id,
        credentials_secret=credentials_secret,
        credentials_keys=credentials_keys,
    )
    if mode == "secret":
        return Credentials({}, user_secret_source(credentials_secret, credentials_keys))
    if mode == "connections" and lookup:
        return Credentials(resolve_dsns(source_conn_id=source_conn_id, target_conn_id=target_conn_id), None)
    return Credentials({}, None)


def placement_kwargs(
    *,
    service_account_name: str | None,
    node_selector: Mapping[str, str] | None,
    tolerations: Sequence[Any] | None,
    host_network: bool,
) -> dict[str, Any]:
    """Pod-spec placement fields shared by the Job and Deployment operators."""
    return {
        "service_account_name": service_account_name,
        "node_selector": dict(node_selector) if node_selector else None,
        "tolerations": [to_toleration(t) for t in tolerations] if tolerations else None,
        "host_network": host_network,
    }


def to_toleration(value: Any) -> V1Toleration:
    """A toleration from a V1Toleration or a dict in either snake_case or the API's camelCase."""
    if isinstance(value, V1Toleration):
        return value
    data = dict(value)
    if "tolerationSeconds" in data:
        data["toleration_seconds"] = data.pop("tolerationSeconds")
    return V1Toleration(**data)
