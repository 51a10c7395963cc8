"""The few calls the shape reader and the target-creation rules make on a connection, as a
Protocol: asyncpg's ``Connection`` has them (the full worker), and
:mod:`zdtp_worker.control.target_check` wraps a psycopg 3 connection in them (``zdtp plan``), so
one copy of the SQL and the rules serves both and this package imports no driver."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Transaction(Protocol):
    async def start(self) -> None: ...

    async def rollback(self) -> None: ...


class Conn(Protocol):
    """``$1``-style placeholders; rows index by position and by column name."""

    async def execute(self, query: str, *args: Any) -> Any: ...

    async def fetch(self, query: str, *args: Any) -> Sequence[Any]: ...

    async def fetchrow(self, query: str, *args: Any) -> Any: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...

    def transaction(self) -> Transaction: ...


__all__ = ["Conn", "Transaction"]
