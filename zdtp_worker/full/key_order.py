"""Do the source and the target order a table's key the same way? Chunk ranges depend on it.

A chunk is a key range: the source reads ``lo <= key < hi`` under *its* order, and the target
deletes and re-checks (counts, checksums) the same range under *its* order. For integers, uuids,
timestamps, … that order is fixed; for text it is the column's collation, and a linguistic
collation (a libc locale such as ``de_DE``, an ICU locale, a non-deterministic collation) orders
by rules that differ between locales and between library versions (glibc, ICU). Were the two
orders different, a range would hold other rows on each side: the target's delete would remove
rows another chunk copied, its count or checksum would disagree.

So the two sides' order is compared per key column: collations as (provider, locale,
deterministic, collation version; ``default`` resolved to the database's), enum types as their
labels in sort order. Byte-order collations (``C``, ``POSIX``, ``C.UTF-8``, ``ucs_basic``, builtin
``C``/``C.UTF-8``) match each other when both databases have the same encoding. When any key
column's order differs — or cannot be shown to be equal — the table is copied as **one chunk**
(no range on either side: exact under any collation), and the plan event says why.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

_BYTE_ORDER = {"c": {"C", "POSIX", "C.UTF-8", "C.utf8"}, "b": {"C", "C.UTF-8"}}

# Per key column: its collation row and the database row (as JSON: their column names differ
# between PostgreSQL 15 and 17+, e.g. colliculocale → colllocale), the encoding, and the labels of
# an enum (also behind one domain) in sort order.
_ORDER_SQL = """
SELECT a.attname::text, a.attcollation::int,
       (SELECT to_jsonb(co) FROM pg_collation co WHERE co.oid = a.attcollation)::text,
       (SELECT to_jsonb(d) - 'datacl' FROM pg_database d WHERE d.datname = current_database())::text,
       pg_encoding_to_char((SELECT encoding FROM pg_database WHERE datname = current_database())),
       CASE WHEN a.attcollation <> 0 AND a.attcollation <> 100
            THEN pg_collation_actual_version(a.attcollation) END,
       (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e
        WHERE e.enumtypid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END),
       t.typtype::text
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = $1 AND a.attname = ANY($2::text[])
"""


def _collation(coll_oid: int, coll: dict[str, Any] | None, db: dict[str, Any], actual: str | None) -> tuple:
    if coll_oid == 100 or coll is None:  # "default": the database's own locale
        provider = str(db.get("datlocprovider") or "c")
        locale = db.get("datcollate") if provider == "c" else db.get("datlocale") or db.get("daticulocale")
        return provider, locale, True, db.get("datcollversion"), db.get("daticurules")
    provider = str(coll.get("collprovider"))
    locale = (
        coll.get("collcollate") if provider == "c" else coll.get("colllocale") or coll.get("colliculocale")
    )
    version = actual or coll.get("collversion")
    return provider, locale, bool(coll.get("collisdeterministic")), version, coll.get("collicurules")


async def key_orders(conn: asyncpg.Connection, oid: int, columns: tuple[str, ...]) -> dict[str, tuple]:
    """Column → what decides its order on this server (comparable across servers)."""
    orders: dict[str, tuple] = {}
    for name, coll_oid, coll, db, encoding, actual, labels, typtype in await conn.fetch(
        _ORDER_SQL, oid, list(columns)
    ):
        if coll_oid:
            provider, locale, deterministic, version, rules = _collation(
                coll_oid, json.loads(coll) if coll else None, json.loads(db), actual
            )
            if deterministic and not rules and locale in _BYTE_ORDER.get(provider, set()):
                orders[name] = ("bytes", encoding)
            else:
                orders[name] = ("collation", provider, locale, deterministic, version, rules, encoding)
        elif labels is not None:
            orders[name] = ("enum", tuple(labels))
        elif typtype in ("c", "r", "m") or typtype is None:
            # Composite or range keys may hold collatable or enum fields: not compared field by
            # field here, so never assumed equal across servers.
            orders[name] = ("unknown", oid)
        else:
            orders[name] = ("fixed",)
    return orders


async def differing_columns(
    src: asyncpg.Connection, src_oid: int, tgt: asyncpg.Connection, tgt_oid: int, columns: tuple[str, ...]
) -> list[str]:
    """Key columns whose order is not shown to be the same on both servers, with why."""
    mine, theirs = await key_orders(src, src_oid, columns), await key_orders(tgt, tgt_oid, columns)
    out = []
    for col in columns:
        a, b = mine.get(col), theirs.get(col)
        if a is None or b is None or a != b or a[0] == "unknown":
            out.append(f"{col} (source {_describe(a)}, target {_describe(b)})")
    return out


def _describe(order: tuple | None) -> str:
    if order is None:
        return "missing"
    kind = order[0]
    if kind == "bytes":
        return f"byte order, {order[1]}"
    if kind == "collation":
        _, provider, locale, deterministic, version, _rules, _enc = order
        names = {"c": "libc", "i": "icu", "b": "builtin"}
        det = "" if deterministic else ", non-deterministic"
        return f"{names.get(provider, provider)} {locale}{det}, version {version}"
    if kind == "enum":
        return f"enum order {list(order[1])}"
    return "composite/range type"
