"""SQL fragments for a chunk's primary-key range, shared by the copy, the delete and the checks.

Bounds travel as lists of the key columns' text forms (exactly what the source printed), and go
back into SQL as typed literals, so every PK type with a text form works (ints, uuid, text,
timestamps, composite keys). Composite keys compare as row values, ``(a, b) >= (x, y)``, which
PostgreSQL answers from the primary-key index.
"""

from __future__ import annotations

from collections.abc import Sequence

from zdtp_worker.full.catalog import Column
from zdtp_worker.pg.quoting import ident, literal


def _row(columns: Sequence[Column]) -> str:
    names = ", ".join(ident(c.name) for c in columns)
    return names if len(columns) == 1 else f"({names})"


def _values(columns: Sequence[Column], values: Sequence[str]) -> str:
    if len(values) != len(columns):
        raise ValueError(f"key has {len(columns)} columns, bound has {len(values)} values")
    items = ", ".join(f"{literal(str(v))}::{c.type_sql}" for c, v in zip(columns, values, strict=True))
    return items if len(columns) == 1 else f"({items})"


def range_clause(
    columns: Sequence[Column],
    lower: Sequence[str] | None,
    upper: Sequence[str] | None,
    *,
    upper_inclusive: bool = False,
) -> str:
    """``lower <= key < upper`` (or ``<= upper``); a ``None`` bound leaves that side open."""
    if not columns:
        return "TRUE"
    parts = []
    if lower is not None:
        parts.append(f"{_row(columns)} >= {_values(columns, lower)}")
    if upper is not None:
        parts.append(f"{_row(columns)} {'<=' if upper_inclusive else '<'} {_values(columns, upper)}")
    return " AND ".join(parts) if parts else "TRUE"


def key_text(columns: Sequence[Column]) -> str:
    """Select list of the key columns as text, for boundaries read back from the source.

    Aliased, so an ``ORDER BY key`` in the same query sorts by the column, not by its text.
    """
    return ", ".join(f"{ident(c.name)}::text AS zdtp_k{i}" for i, c in enumerate(columns))


def order_by(columns: Sequence[Column], *, descending: bool = False) -> str:
    suffix = " DESC" if descending else ""
    return ", ".join(f"{ident(c.name)}{suffix}" for c in columns)
