"""The per-chunk checksum the copy records and ``verify`` re-checks, as pure SQL builders (no
driver): the full-sync worker (asyncpg) and :mod:`.verify` (psycopg 3) build the very same query.

A row's checksum is md5 of its text form, ``ROW(cols)::text``, summed over the rows (first 64
bits, as numeric): order-independent, and a missing, extra or changed row changes the count or the
sum. It equals :func:`zdtp_worker.pg.checksum.checksum_sql` when no column needs a cast.

Type-faithful across allowed widenings (:mod:`zdtp_worker.pg.type_change`): the target side reads
each column whose type differs from the source's *cast back to the source's type*
(``int8 → int4``, ``float8 → real``, ``numeric(14,4) → numeric(12,2)``, ``char(8) → char(5)``).
A widened value came from the source type, so casting it back is exact and prints as the source
printed it — the other direction is not (``real 1.1`` cast up is ``1.100000023841858``, while the
target parsed ``1.1``). ``varchar(n)`` and ``varbit(n)`` are cast to their unbounded form, so an
over-long target value is not silently truncated into a match. What the source type cannot
express (a digit beyond the source's scale or float precision) is outside the comparison: the
copy cannot produce it.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from zdtp_worker.pg.quoting import ident
from zdtp_worker.pg.type_change import parse

# A column of the checksum: (name, cast type or None).
SumColumn = tuple[str, str | None]

# Length-bounded types whose explicit cast truncates silently: compare in the unbounded type.
_UNBOUNDED = ("character varying", "bit varying")
# What format_type() prints (names, quoted names, schema dots, modifiers, array brackets).
_TYPE_TEXT = re.compile(r'^[\w ."(),\[\]]+$')


def cast_for(source_type: str, target_type: str) -> str | None:
    """The type the target column is read as for the checksum; ``None`` = as it is."""
    if source_type == target_type:
        return None
    parsed = parse(source_type)
    if parsed.base in _UNBOUNDED and parsed.mods:
        return parsed.base + "[]" * parsed.array_dims
    return source_type


def sum_columns(
    columns: Iterable[str], source_types: dict[str, str], target_types: dict[str, str]
) -> list[SumColumn]:
    """``(name, cast)`` of each copied column for the target side (the source side uses no casts)."""
    return [(c, cast_for(source_types[c], target_types.get(c, source_types[c]))) for c in columns]


def _expr(name: str, cast: str | None) -> str:
    if cast is None:
        return ident(name)
    if not _TYPE_TEXT.match(cast) or "--" in cast:
        raise ValueError(f"column {name!r}: {cast!r} is not a type name")
    return f"{ident(name)}::{cast}"


def checksum_select(table_sql: str, columns: Sequence[SumColumn], where: str = "TRUE") -> str:
    """``SELECT rows, checksum`` of ``table_sql``'s rows matching ``where``."""
    row = f"ROW({', '.join(_expr(n, c) for n, c in columns)})::text"
    return (
        f"SELECT count(*) AS rows, "
        f"coalesce(sum(('x' || substr(md5({row}), 1, 16))::bit(64)::bigint::numeric), 0) AS checksum "
        f"FROM {table_sql} WHERE {where}"
    )


def to_json(columns: Sequence[SumColumn]) -> str:
    return json.dumps([[n, c] for n, c in columns])


def from_json(value: Any) -> list[SumColumn] | None:
    if value is None:
        return None
    data = json.loads(value) if isinstance(value, str) else value
    return [(str(n), None if c is None else str(c)) for n, c in data]


# ---------------------------------------------------------------------------------------------
# Coverage: do the recorded ranges leave no gap?


def part_bounds(part: str) -> tuple[Any, Any]:
    """``(lower, upper)`` key values of a part key (``zdtp_worker.full.checkpoints.part_key``)."""
    if not part:
        return None, None
    lower, upper = json.loads(part)
    return lower, upper


def bound_text(values: Sequence[Any] | None) -> list[str] | None:
    """A key bound as the chunk plan stores it (the chunker's rule: text forms, booleans lower)."""
    if values is None:
        return None
    return [str(v).lower() if isinstance(v, bool) else str(v) for v in values]


def covers_all(ranges: list[tuple[Any, Any]]) -> bool:
    """Do the half-open ``[lower, upper)`` ranges (None = open) tile the whole key space?"""
    by_lower = {json.dumps(lo): hi for lo, hi in ranges}
    if len(by_lower) != len(ranges):
        return False  # two ranges start at the same key: they overlap
    at: Any = None
    for _ in range(len(ranges) + 1):
        key = json.dumps(at)
        if key not in by_lower:
            return False
        at = by_lower[key]
        if at is None:
            return True
    return False


def plan_gaps(chunks: Sequence[dict[str, Any]], part: str) -> list[str]:
    """What is wrong with a stored chunk plan's coverage of its part (``[]`` = none).

    The delete ranges must tile the part (so no stale target row survives outside every chunk)
    and the read ranges must chain (so every source row the plan's snapshot held is read once).
    """
    if not chunks:
        return ["the plan has no chunk"]
    ordered = sorted(chunks, key=lambda c: c["no"])
    if [c["no"] for c in ordered] != list(range(len(ordered))):
        return [f"chunk numbers are not 0..{len(ordered) - 1}"]
    lower, upper = part_bounds(part)
    problems = []
    if ordered[0]["del_lower"] != bound_text(lower) or ordered[-1]["del_upper"] != bound_text(upper):
        problems.append("the delete ranges do not reach both ends of the part")
    for a, b in itertools.pairwise(ordered):
        if a["del_upper"] != b["del_lower"] or a["del_upper_inclusive"]:
            problems.append(f"delete ranges of chunks {a['no']} and {b['no']} do not meet")
        if not (a["empty"] or b["empty"]) and (a["upper"] != b["lower"] or a["upper_inclusive"]):
            problems.append(f"read ranges of chunks {a['no']} and {b['no']} do not meet")
    return problems


def describe_range(chunk: dict[str, Any]) -> str:
    """``[lower, upper)`` of a chunk's delete range (its rows in the target), for messages."""

    def show(values: list[str] | None, open_side: str) -> str:
        if values is None:
            return open_side
        return values[0] if len(values) == 1 else "(" + ", ".join(values) + ")"

    close = "]" if chunk.get("del_upper_inclusive") else ")"
    return f"[{show(chunk.get('del_lower'), '-inf')}, {show(chunk.get('del_upper'), '+inf')}{close}"
