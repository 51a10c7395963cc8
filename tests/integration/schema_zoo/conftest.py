"""Fixtures of the schema-zoo acceptance suite: the zoo on a source of each supported major.

``source_server`` is parametrised over PostgreSQL 18 (the embedded dev server) and Debian's
PostgreSQL 15, so every zoo test runs against both; the target is always the dev server (18).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures import schema_zoo
from tests.fixtures.postgres import PgServer
from tests.fixtures.postgres15 import pg15_server  # noqa: F401 - fixture

SOURCE_VERSIONS = ["pg18", "pg15"]


@pytest.fixture(params=SOURCE_VERSIONS)
def source_server(request: pytest.FixtureRequest) -> PgServer:
    return request.getfixturevalue("pg_server" if request.param == "pg18" else "pg15_server")


@pytest.fixture
def zoo_source(source_server: PgServer) -> Iterator[str]:
    """A fresh source database holding the whole zoo; its DSN."""
    name = source_server.create_database("zoo")
    dsn = source_server.dsn(name)
    schema_zoo.create(dsn)
    yield dsn
    source_server.drop_database(name)


@pytest.fixture
def empty_source(source_server: PgServer) -> Iterator[str]:
    """A fresh, empty source database on the parametrised server (for tests with their own tables)."""
    name = source_server.create_database("src")
    yield source_server.dsn(name)
    source_server.drop_database(name)
