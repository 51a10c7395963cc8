"""The real-node fixtures (``real_node``, ``node_namespace``) for the batch fan-out tests."""

from tests.e2e.real_node.conftest import node_namespace, real_node  # noqa: F401  (fixtures)
