"""KubeConnection: the one description of *which* cluster an operator, trigger or sensor talks to.

Operators resolve it (with the ``kubernetes`` connection's extras) before deferring, so the
trigger rebuilds the same client in the triggerer without a connection lookup — the approach
KubernetesPodOperator takes. It serialises to plain JSON for the trigger table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from zdtp_provider.hooks.kubernetes import ZdtpKubernetesHook


@dataclass(frozen=True)
class KubeConnection:
    conn_id: str | None = None
    config_file: str | None = None
    cluster_context: str | None = None
    in_cluster: bool | None = None
    # The connection's extras once resolved; ``None`` means "look the connection up".
    extras: Mapping[str, Any] | None = field(default=None, compare=False)

    def hook(self) -> ZdtpKubernetesHook:
        return ZdtpKubernetesHook(
            conn_id=self.conn_id,
            connection_extras=self.extras,
            config_file=self.config_file,
            cluster_context=self.cluster_context,
            in_cluster=self.in_cluster,
        )

    def resolved(self, hook: ZdtpKubernetesHook) -> KubeConnection:
        """This connection with its extras read from ``hook`` (for a trigger to reuse)."""
        return replace(self, extras=dict(hook.conn_extras))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["extras"] = dict(self.extras) if self.extras is not None else None
        return data

    @classmethod
    def from_value(cls, value: KubeConnection | Mapping[str, Any] | None) -> KubeConnection:
        if isinstance(value, KubeConnection):
            return value
        return cls(**dict(value or {}))
