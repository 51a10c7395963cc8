"""The provider's boundary: from ``zdtp_worker`` it imports only the contract (spec, errors,
result, envelope) and the declared control module (database work done on the Airflow side).

Everything else of ``zdtp_worker`` is private to the container and may import drivers Airflow's
side does not declare. The test walks every import statement of every provider module (top level
and inside functions), so a lazy import cannot slip past it either.
"""

from __future__ import annotations

import ast

from tests.conftest import REPO

ALLOWED = ("zdtp_worker.contract", "zdtp_worker.control")


def _worker_imports() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted((REPO / "zdtp_provider").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if name == "zdtp_worker" or name.startswith("zdtp_worker."):
                    found.append((str(path.relative_to(REPO)), node.lineno, name))
    return found


def test_provider_imports_only_the_worker_contract_and_control_module() -> None:
    imports = _worker_imports()
    assert imports, "the walk found no zdtp_worker import at all: it is not looking in the right place"
    bad = [
        f"{path}:{line} imports {name}"
        for path, line, name in imports
        if not any(name == a or name.startswith(a + ".") for a in ALLOWED)
    ]
    assert not bad, "provider reaches into worker internals:\n" + "\n".join(bad)


def test_workload_layer_is_airflow_free_apart_from_the_pod_template_merge() -> None:
    """The build layer stays usable without an Airflow runtime (only cncf-kubernetes' pod
    template reconciliation, imported where a template is merged)."""
    for path in sorted((REPO / "zdtp_provider" / "workload").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module and module.startswith("airflow"):
                assert module.startswith("airflow.providers.cncf.kubernetes.pod_generator"), (
                    f"{path.name}:{node.lineno} imports {module}"
                )
