"""Shared trigger plumbing: building the (sync) hook and running its calls off the event loop.

The triggerer must never block its loop, and the sync kubernetes client is the one the rest of
zdtp uses and tests, so calls go through ``asyncio.to_thread``. Connection extras are resolved by
the operator before deferring, so the triggerer needs no connection lookup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import cached_property
from typing import Any, TypeVar

from airflow.triggers.base import BaseTrigger

from zdtp_provider.hooks.kubernetes import ZdtpKubernetesHook

T = TypeVar("T")
ON_KILL_TIMEOUT = 30.0


class ZdtpTriggerBase(BaseTrigger):
    def __init__(
        self,
        *,
        name: str,
        namespace: str,
        kubernetes_conn_id: str | None = None,
        connection_extras: dict | None = None,
        config_file: str | None = None,
        cluster_context: str | None = None,
        in_cluster: bool | None = None,
        poll_interval: float = 2.0,
    ) -> None:
        super().__init__()
        self.name = name
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id
        self.connection_extras = connection_extras
        self.config_file = config_file
        self.cluster_context = cluster_context
        self.in_cluster = in_cluster
        self.poll_interval = poll_interval

    def _common_kwargs(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "kubernetes_conn_id": self.kubernetes_conn_id,
            "connection_extras": self.connection_extras,
            "config_file": self.config_file,
            "cluster_context": self.cluster_context,
            "in_cluster": self.in_cluster,
            "poll_interval": self.poll_interval,
        }

    @cached_property
    def hook(self) -> ZdtpKubernetesHook:
        return ZdtpKubernetesHook(
            conn_id=self.kubernetes_conn_id,
            connection_extras=self.connection_extras,
            config_file=self.config_file,
            cluster_context=self.cluster_context,
            in_cluster=self.in_cluster,
        )

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)
