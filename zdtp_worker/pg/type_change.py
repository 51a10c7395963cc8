"""Which column type changes keep every value: safe widenings vs lossy changes.

Pure functions over ``format_type()`` strings (``"numeric(12,2)"``, ``"character varying(20)"``,
``"integer[]"``), no I/O. Three callers ask the same question: the full copy into an existing
target column (:mod:`.target_fit`, also run at plan time by :mod:`zdtp_worker.control.target_check`),
and the CDC stream when a Relation message shows a column whose source type differs from the
target's. For the stream, :func:`classify` means:

- ``same``: nothing.
- ``widen``: every value of the old type converts exactly and the same way on both servers
  (``integer → bigint``, ``varchar(n) → varchar(m ≥ n)``/``text``, numeric precision/scale up,
  ``real → double precision``, longer ``char(n)``, finer ``timestamp(p)``, ``date → timestamp``);
  the target gets ``ALTER COLUMN … TYPE`` and nothing else.
- ``widen_backfill``: exact, but the result depends on the session's TimeZone
  (``timestamp → timestamptz``, ``date → timestamptz``): the source converted the rows in the
  DDL session's zone, which the stream does not tell. The target alters the type and then copies
  the column's current values from the source (see :mod:`.column_sync`).
- ``lossy``: anything else (narrowing, scale down, ``timestamptz → date``, ``double → real``,
  ``json → jsonb``, text to anything). Refused with exit 65 naming the column and both types,
  unless the sync opts in (``incremental.allow_lossy_type_changes``): then the target alters the
  type with a plain cast and copies the column's values from the source, so it ends equal to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["same", "widen", "widen_backfill", "lossy"]

_INT_DIGITS = {"smallint": 5, "integer": 10, "bigint": 19}
_INT_ORDER = ("smallint", "integer", "bigint")
_MOD = re.compile(r"^(?P<base>[a-z ]+?)(?:\((?P<args>[0-9, ]+)\))?(?P<rest>( with(out)? time zone)?)$")


@dataclass(frozen=True)
class ParsedType:
    """A ``format_type()`` string split into base name and modifiers."""

    base: str  # "numeric", "character varying", "timestamp with time zone", ...
    mods: tuple[int, ...]  # () when unconstrained
    array_dims: int = 0


def parse(type_sql: str) -> ParsedType:
    text = type_sql.strip()
    dims = 0
    while text.endswith("[]"):
        dims += 1
        text = text[:-2]
    m = _MOD.match(text)
    if not m:
        return ParsedType(text, (), dims)
    base = (m.group("base") + (m.group("rest") or "")).strip()
    mods = tuple(int(x) for x in m.group("args").split(",")) if m.group("args") else ()
    return ParsedType(base, mods, dims)


def _numeric_fits(old: ParsedType, new: ParsedType) -> bool:
    """Every value of numeric ``old`` is representable in ``new`` without rounding."""
    if not new.mods:
        return True
    if not old.mods:
        return False
    p, s = old.mods[0], old.mods[1] if len(old.mods) > 1 else 0
    p2, s2 = new.mods[0], new.mods[1] if len(new.mods) > 1 else 0
    return s2 >= s and (p2 - s2) >= (p - s)


def _length_fits(old: ParsedType, new: ParsedType) -> bool:
    if not new.mods:
        return True
    return bool(old.mods) and new.mods[0] >= old.mods[0]


def _scalar(old: ParsedType, new: ParsedType) -> Verdict:
    o, n = old.base, new.base
    if o == n and old.mods == new.mods:
        return "same"
    if o in _INT_DIGITS:
        if n in _INT_DIGITS:
            return "widen" if _INT_ORDER.index(n) >= _INT_ORDER.index(o) else "lossy"
        if n == "numeric":
            if not new.mods:
                return "widen"
            p2, s2 = new.mods[0], new.mods[1] if len(new.mods) > 1 else 0
            return "widen" if p2 - s2 >= _INT_DIGITS[o] else "lossy"
        return "lossy"
    if o == "numeric" and n == "numeric":
        return "widen" if _numeric_fits(old, new) else "lossy"
    if o == "real" and n == "double precision":
        return "widen"
    if o in ("character varying", "text") and n in ("character varying", "text"):
        if n == "text" or (o == "character varying" and _length_fits(old, new)):
            return "widen"
        return "widen" if o == "text" and not new.mods else "lossy"
    if o == "character":
        # char(n) → char(m ≥ n) pads; → varchar/text drops trailing blanks, which char semantics
        # ignore anyway. Either way both servers compute the same value from the same input.
        if n == "character":
            return "widen" if _length_fits(old, new) else "lossy"
        if n == "text" or (n == "character varying" and _length_fits(old, new)):
            return "widen"
        return "lossy"
    if o == "bit varying" and n == "bit varying":
        return "widen" if _length_fits(old, new) else "lossy"
    for kind in ("timestamp", "time"):
        for zone in (" without time zone", " with time zone"):
            if o == kind + zone and n == kind + zone:
                # Fractional-second precision: default (no modifier) is 6, the maximum.
                op = old.mods[0] if old.mods else 6
                np_ = new.mods[0] if new.mods else 6
                return "widen" if np_ >= op else "lossy"
    if o == "timestamp without time zone" and n == "timestamp with time zone":
        return "widen_backfill" if _precision(new) >= _precision(old) else "lossy"
    if o == "date" and n == "timestamp without time zone":
        return "widen"
    if o == "date" and n == "timestamp with time zone":
        return "widen_backfill"
    return "lossy"


def _precision(t: ParsedType) -> int:
    return t.mods[0] if t.mods else 6


def classify(old_type: str, new_type: str) -> Verdict:
    """What changing a column from ``old_type`` (target) to ``new_type`` (source) means."""
    if old_type == new_type:
        return "same"
    old, new = parse(old_type), parse(new_type)
    if old.array_dims != new.array_dims:
        return "lossy"
    return _scalar(old, new)
