"""docs/what-zdtp-reproduces.md names real tests, workload steps and zoo tables (no server needed).

The page is a claim per row backed by a test; a renamed test or step must not leave it pointing
at nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.fixtures import schema_zoo
from tests.integration.schema_zoo import workload

HERE = Path(__file__).resolve().parent
PAGE = HERE.parents[2] / "docs" / "what-zdtp-reproduces.md"


def _defined_tests() -> set[str]:
    # The zoo suite's tests, and the few rows backed by tests elsewhere under tests/integration.
    names = set()
    for path in HERE.parent.rglob("test_*.py"):
        names |= set(re.findall(r"^def (test_\w+)", path.read_text(), re.M))
    return names


def test_every_test_the_page_names_exists() -> None:
    text = PAGE.read_text()
    named = set(re.findall(r"\b(test_\w+?)(?:`|,|\s|$)", text))
    defined = _defined_tests()
    # "…_by_validate" abbreviates a name given in full just before it.
    missing = {n for n in named if n not in defined}
    assert not missing, f"{PAGE.name} names tests that do not exist: {sorted(missing)}"
    for row in re.findall(r"`…_(\w+)`", text):
        assert any(t.endswith(row) for t in defined), row


def test_every_step_and_zoo_table_the_page_names_exists() -> None:
    text = PAGE.read_text()
    steps = {s.name for s in (*workload.BEFORE_KILL, *workload.AFTER_KILL)}
    for step in re.findall(r'step "([^"]+)"', text):
        assert step in steps, f"unknown workload step {step!r}"
    for cell in re.findall(r"zoo ((?:`[^`]+`(?:, )?)+)", text):
        for table in re.findall(r"`([^`]+)`", cell):
            assert table in schema_zoo.BY_NAME, f"unknown zoo table {table!r}"


def test_every_zoo_table_appears_on_the_page() -> None:
    text = PAGE.read_text()
    absent = [t.name for t in schema_zoo.TABLES if f"`{t.name}`" not in text and t.name != schema_zoo.NAME_63]
    assert not absent, absent
