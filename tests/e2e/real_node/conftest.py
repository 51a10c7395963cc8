"""Fixtures for tests that run real pods on the kubelet node (``dev/node/up.sh``).

``real_node`` starts the node once per session (seconds when it already runs). On machines that
cannot run one it skips with the reason ``up.sh`` gives — unless ``ZDTP_REAL_NODE=required``,
where that reason fails the test (see tests/conftest.py); any other start failure is an error.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.real_node import RealNode, RealNodeUnavailable, ensure_real_node, real_node_required
from tests.fixtures.cluster import Cluster, create_namespace


@pytest.fixture(scope="session")
def real_node(cluster: Cluster) -> RealNode:
    try:
        return ensure_real_node()
    except RealNodeUnavailable as exc:
        if real_node_required():
            pytest.fail(f"ZDTP_REAL_NODE=required, but no real node could start: {exc}", pytrace=False)
        pytest.skip(f"no real node on this machine: {exc}")


@pytest.fixture
def node_namespace(cluster: Cluster, real_node: RealNode) -> Iterator[str]:
    # hostNetwork pods (they reach PostgreSQL on 127.0.0.1) need the privileged Pod Security level.
    name = create_namespace(cluster, level="privileged")
    yield name
    cluster.core.delete_namespace(name, propagation_policy="Foreground")
