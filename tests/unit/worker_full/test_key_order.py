"""How the worker reads a key column's order from catalog rows (no server): the default collation
resolves to the database's, PostgreSQL 15 and 17+ catalog column names both work, and byte-order
collations compare equal across providers."""

from __future__ import annotations

from zdtp_worker.full.key_order import _BYTE_ORDER, _collation, _describe

PG15_DB = {"datlocprovider": "c", "datcollate": "C.UTF-8", "datcollversion": "2.36"}
PG15_ICU_DB = {
    "datlocprovider": "i",
    "datcollate": "C.UTF-8",
    "daticulocale": "und",
    "datcollversion": "153.1",
}
PG18_DB = {"datlocprovider": "b", "datcollate": "C.UTF-8", "datlocale": "C.UTF-8", "datcollversion": "1"}


def test_default_collation_is_the_databases() -> None:
    assert _collation(100, None, PG15_DB, None)[:3] == ("c", "C.UTF-8", True)
    assert _collation(100, None, PG15_ICU_DB, None)[:4] == ("i", "und", True, "153.1")
    assert _collation(100, None, PG18_DB, None)[:2] == ("b", "C.UTF-8")


def test_icu_locale_column_names_of_15_and_17() -> None:
    pg15 = {"collprovider": "i", "colliculocale": "und-u-ks-level2", "collisdeterministic": False}
    pg17 = {"collprovider": "i", "colllocale": "und-u-ks-level2", "collisdeterministic": False}
    assert _collation(16400, pg15, PG15_DB, "72.1")[:4] == ("i", "und-u-ks-level2", False, "72.1")
    assert _collation(16400, pg17, PG18_DB, "76.1")[:4] == ("i", "und-u-ks-level2", False, "76.1")


def test_byte_order_collations() -> None:
    assert "C.UTF-8" in _BYTE_ORDER["c"] and "POSIX" in _BYTE_ORDER["c"] and "C" in _BYTE_ORDER["b"]
    assert "und" not in _BYTE_ORDER.get("i", set())


def test_describe_names_both_orders() -> None:
    assert _describe(("collation", "i", "und", False, "72.1", None, "UTF8")) == (
        "icu und, non-deterministic, version 72.1"
    )
    assert _describe(("enum", ("low", "mid", "high"))) == "enum order ['low', 'mid', 'high']"
    assert _describe(("bytes", "UTF8")) == "byte order, UTF8"
    assert _describe(None) == "missing"
