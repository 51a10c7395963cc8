"""Lifecycle tests reuse the provider tests' fixtures (fake-password connections)."""

from tests.integration.provider.conftest import db_conns, wait_for  # noqa: F401
