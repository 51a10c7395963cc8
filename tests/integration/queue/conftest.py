"""Queue tests run once per backend: ``backend`` is (name, Redis URL or None)."""

from __future__ import annotations

import pytest

from tests.fixtures.redis import redis_server, redis_url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.postgres


@pytest.fixture(params=["postgres", "redis"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    if request.param == "redis":
        return "redis", request.getfixturevalue("redis_url")
    return "postgres", None
