"""What every work-queue backend promises, and the values crossing that promise.

A work item is one chunk of a full run. The contract (tested over every backend in
``tests/integration/queue``):

- ``enqueue`` is idempotent per ``(queue, dedup_key)``: re-enqueueing a run's plan adds nothing;
- ``claim`` leases the next ready item, or an item whose lease expired (its worker died), to one
  owner; two concurrent claims never get the same live item;
- ``hold`` runs inside the chunk's target transaction and fences it: it returns ``True`` only for
  the lease's owner of an item not done yet, and a second holder of the same item waits until the
  first transaction ends (then sees it done and skips);
- ``complete`` runs inside that transaction and ``settle`` after it commits: a transactional
  backend (PostgreSQL) marks the item done with the data, a separate store (Redis) after the
  commit — a crash in between leaves a leased item whose chunk checkpoint already says done, so
  the next claimant skips the copy and only marks it done;
- ``status`` tells the copy task whether every item is done, naming the ones that are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

Backend = Literal["postgres", "redis"]
BACKENDS: tuple[Backend, ...] = ("postgres", "redis")


@dataclass(frozen=True)
class Item:
    queue: str
    item_id: int
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class OpenItem:
    """An item not done: ``ready`` (never taken or returned), ``leased`` (a live lease) or
    ``abandoned`` (leased, lease expired: its worker died and nobody took it over yet)."""

    item_id: int
    key: str
    state: Literal["ready", "leased", "abandoned"]
    owner: str | None
    attempts: int


@dataclass(frozen=True)
class QueueStatus:
    queue: str
    total: int
    done: int
    open: tuple[OpenItem, ...]

    @property
    def complete(self) -> bool:
        return self.total > 0 and not self.open

    def describe(self, limit: int = 10) -> str:
        """One line naming the open items (the first ``limit``), for a task failure."""
        if not self.total:
            return f"queue {self.queue} holds no items"
        names = ", ".join(f"{i.key} ({i.state}, {i.attempts} attempts)" for i in self.open[:limit])
        more = f" and {len(self.open) - limit} more" if len(self.open) > limit else ""
        return f"queue {self.queue}: {self.done}/{self.total} items done; not done: {names}{more}"


class QueueBackend(Protocol):
    """A :class:`~zdtp_worker.drivers.WorkQueue` plus what runs outside the chunk transaction."""

    transactional: bool  # True: ``complete`` commits with the chunk; False: ``settle`` does it

    async def bootstrap(self) -> None: ...
    async def enqueue(self, queue: str, items: list[tuple[str, dict[str, Any]]]) -> int: ...
    async def claim(self, queue: str, *, owner: str, lease_seconds: float) -> Item | None: ...
    async def hold(self, item: Item, *, owner: str) -> bool: ...
    async def complete(self, item: Item) -> None: ...
    async def settle(self) -> None:
        """After the chunk transaction committed: make its ``complete`` calls durable."""
        ...

    def forget(self) -> None:
        """The chunk transaction rolled back: drop its ``complete`` calls."""
        ...

    async def open_items(self, queue: str) -> tuple[int, float | None]: ...
    async def status(self, queue: str) -> QueueStatus: ...
    async def close(self) -> None: ...
