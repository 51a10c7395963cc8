"""The Airflow side may use the worker only through its declared modules.

Walks the import statements (module level and inside functions: a lazy import runs too) of every
module of ``zdtp_provider``, and from there every ``zdtp_worker`` module reachable, and fails if

- a provider module imports a ``zdtp_worker`` module outside ``zdtp_worker.contract`` /
  ``zdtp_worker.control`` (the rest of the worker is private to the container), or
- asyncpg or psycopg2 is reachable from the provider's import graph (drivers only the worker
  image installs; Airflow's side uses psycopg 3).
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PUBLIC = ("zdtp_worker.contract", "zdtp_worker.control")
WORKER_ONLY_DRIVERS = ("asyncpg", "psycopg2")
OURS = ("zdtp_provider", "zdtp_worker")


def _module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _with_parents(name: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a``, ``a.b`` and ``a.b.c``."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _imports(path: Path) -> set[str]:
    """Absolute names of every module an ``import`` in ``path`` can load."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.update(_with_parents(alias.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            found.update(_with_parents(base))
            for alias in node.names:
                # ``from pkg import mod`` loads the submodule when there is one.
                if _module_file(f"{base}.{alias.name}") is not None:
                    found.add(f"{base}.{alias.name}")
    return found


def _is_public(name: str) -> bool:
    return name == "zdtp_worker" or any(name == p or name.startswith(p + ".") for p in PUBLIC)


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    """Import edges of every reachable module of ours, starting from all provider modules."""
    start = sorted(_module_name(p) for p in (REPO / "zdtp_provider").rglob("*.py"))
    edges: dict[str, set[str]] = {}
    todo = deque(start)
    while todo:
        name = todo.popleft()
        if name in edges:
            continue
        path = _module_file(name)
        edges[name] = _imports(path) if path is not None else set()
        todo.extend(n for n in edges[name] if n.split(".")[0] in OURS and n not in edges)
    return edges, start


def _chain(edges: dict[str, set[str]], start: list[str], goal: str) -> list[str]:
    """One import path from a provider module to ``goal`` (for the failure message)."""
    parent: dict[str, str | None] = dict.fromkeys(start)
    todo = deque(start)
    while todo:
        name = todo.popleft()
        if name == goal:
            chain = [name]
            while parent[chain[-1]] is not None:
                chain.append(parent[chain[-1]])  # type: ignore[arg-type]
            return chain[::-1]
        for nxt in sorted(edges.get(name, ())):
            if nxt not in parent:
                parent[nxt] = name
                todo.append(nxt)
    return [goal]


def test_provider_imports_only_the_worker_contract_and_control() -> None:
    edges, start = _graph()
    private = sorted(
        f"{module} imports {name}"
        for module in start
        for name in edges[module]
        if name.startswith("zdtp_worker") and not _is_public(name)
    )
    assert not private, "provider reaches into private worker modules:\n" + "\n".join(private)


def test_worker_only_drivers_are_unreachable_from_the_provider() -> None:
    edges, start = _graph()
    reachable = {n for names in edges.values() for n in names}
    drivers = sorted(n for n in reachable if n.split(".")[0] in WORKER_ONLY_DRIVERS and "." not in n)
    chains = [" -> ".join(_chain(edges, start, d)) for d in drivers]
    assert not drivers, "worker-only drivers reachable from zdtp_provider:\n" + "\n".join(chains)


def test_the_walk_sees_real_imports() -> None:
    """Guard against a walk that passes because it finds nothing."""
    edges, start = _graph()
    assert "zdtp_provider.database_steps" in start
    assert "zdtp_worker.control.verify" in edges["zdtp_provider.database_steps"]
    assert "psycopg" in edges["zdtp_worker.control.session"]
    assert "asyncpg" in _imports(REPO / "zdtp_worker" / "full" / "session.py")
