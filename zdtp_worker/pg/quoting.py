"""Quoting of SQL identifiers and text literals, for statements the worker builds as text.

Statements are built as text (not bound parameters) where PostgreSQL takes no parameters:
DDL, COPY, and key-range predicates that must be planned with their literal values.
"""

from __future__ import annotations

from zdtp_worker.contract.errors import DataError


def ident(name: str) -> str:
    """Quote an SQL identifier (any name, including ones with quotes or upper case)."""
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    """``"schema"."name"``, both parts quoted."""
    return f"{ident(schema)}.{ident(name)}"


def literal(value: str) -> str:
    """Quote a text literal (sessions run with standard_conforming_strings=on, see .session)."""
    if "\x00" in value:
        raise DataError("key value contains a NUL byte")
    return "'" + value.replace("'", "''") + "'"
