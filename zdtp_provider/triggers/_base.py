"""Shared trigger plumbing: the cluster connection, and running hook calls off the event loop.

The triggerer must never block its loop, and the sync kubernetes client is the one the rest of
zdtp uses and tests, so calls go through ``asyncio.to_thread``. The connection arrives resolved
(:class:`~zdtp_provider.hooks.connection.KubeConnection` with extras), so the triggerer needs no
connection lookup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any, TypeVar

from airflow.triggers.base import BaseTrigger

from zdtp_provider.hooks.connection import KubeConnection
from zdtp_provider.hooks.kubernetes import ZdtpKubernetesHook
from zdtp_provider.triggers.settle import SettlingTrigger, hold_until

T = TypeVar("T")
ON_KILL_TIMEOUT = 30.0


class ZdtpTriggerBase(SettlingTrigger, BaseTrigger):
    """Waits on one named object; subclasses add their own arguments via :meth:`extra_kwargs`."""

    def __init__(
        self,
        *,
        name: str,
        namespace: str,
        connection: KubeConnection | Mapping[str, Any] | None = None,
        poll_interval: float = 2.0,
        not_before: str | None = None,
    ) -> None:
        super().__init__()
        self.not_before = not_before
        self.name = name
        self.namespace = namespace
        self.connection = KubeConnection.from_value(connection)
        self.poll_interval = poll_interval

    def extra_kwargs(self) -> dict[str, Any]:
        return {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "name": self.name,
                "namespace": self.namespace,
                "connection": self.connection.to_dict(),
                "poll_interval": self.poll_interval,
                "not_before": self.not_before,
                **self.extra_kwargs(),
            },
        )

    @cached_property
    def hook(self) -> ZdtpKubernetesHook:
        return self.connection.hook()

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def poll(self, fn: Callable[[], dict[str, Any] | None]):
        """Yield-ready helper: run ``fn`` every ``poll_interval`` until it returns an event dict."""
        while True:
            try:
                event = await self.call(fn)
            except Exception as exc:
                event = {"status": "error", "message": str(exc)}
            if event is not None:
                await hold_until(self.not_before)
                return {"name": self.name, "namespace": self.namespace, **event}
            await asyncio.sleep(self.poll_interval)
