"""Can an existing target table take the source's rows without loss, and how: the COPY format
and the columns COPY moves. Pure (no I/O, no driver), so the worker's check before it writes
(:mod:`zdtp_worker.full.schema`, asyncpg) and the plan-time check on the Airflow side
(:mod:`zdtp_worker.control.target_check`, psycopg 3) are one rule and cannot drift apart.

Every source column must exist in the target with the same type (binary COPY, when the type is
built in) or a type every source value converts to exactly (a safe widening per
:mod:`.type_change`, text COPY: the target parses the source's text form). Anything else is a
:class:`DataError` naming the column and both types. Generated columns are computed by each side
and never copied; a target column the source lacks must be nullable (or generated).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from zdtp_worker.contract.errors import DataError
from zdtp_worker.pg.type_change import classify

CopyFormat = Literal["binary", "text"]

# Types created by initdb have OIDs below this; their binary format carries no per-database
# OIDs, so binary COPY between two databases is safe only for them (arrays embed element OIDs).
FIRST_NORMAL_OID = 16384


def columns_sql(placeholder: str) -> str:
    """A relation's columns (oid bound to ``placeholder``) as the fit check reads them."""
    return (
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type_sql, a.atttypid::int AS type_oid,"
        " t.typcategory::text AS category, a.attnotnull, a.attgenerated <> '' AS generated"
        " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
        f" WHERE a.attrelid = {placeholder} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
    )


class FitColumn(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def type_sql(self) -> str: ...  # format_type(), e.g. "numeric(12,2)"
    @property
    def category(self) -> str: ...  # pg_type.typcategory
    @property
    def not_null(self) -> bool: ...
    @property
    def generated(self) -> bool: ...
    @property
    def builtin(self) -> bool: ...


class FitTable(Protocol):
    @property
    def name(self) -> object: ...  # printed in messages
    @property
    def columns(self) -> Sequence[FitColumn]: ...
    @property
    def pk(self) -> tuple[str, ...]: ...


def lossy_message(where: str, column: str, *, source_type: str, target_type: str) -> str:
    return (
        f"{where}: column {column!r} is {target_type}, which cannot hold every value of the "
        f"source type {source_type} exactly (change the target column or leave it out)"
    )


def copy_plan(source: FitTable, target: FitTable) -> tuple[CopyFormat, tuple[str, ...]]:
    """The COPY format and column list that move ``source`` rows into ``target``, or DataError."""
    where = f"target table {target.name}"
    binary = True
    target_cols = {c.name: c for c in target.columns}
    columns = []
    for col in source.columns:
        tcol = target_cols.get(col.name)
        if tcol is None:
            raise DataError(f"{where}: column {col.name!r} is missing (source type {col.type_sql})")
        if tcol.generated:
            if not col.generated:
                raise DataError(
                    f"{where}: column {col.name!r} is generated there but holds data on the source"
                )
            continue  # both sides compute it
        columns.append(col.name)  # a source-generated column into a plain one: copy its values
        if tcol.type_sql == col.type_sql:
            binary = binary and col.builtin
            continue
        verdict = classify(col.type_sql, tcol.type_sql) if tcol.category == col.category else "lossy"
        if verdict == "lossy":
            raise DataError(
                lossy_message(where, col.name, source_type=col.type_sql, target_type=tcol.type_sql)
            )
        binary = False
    source_names = {c.name for c in source.columns}
    for tcol in target.columns:
        if tcol.name not in source_names and tcol.not_null and not tcol.generated:
            raise DataError(f"{where}: column {tcol.name!r} is NOT NULL but the source has no such column")
    if source.pk and target.pk and tuple(source.pk) != tuple(target.pk):
        raise DataError(
            f"{where}: primary key ({', '.join(target.pk)}) "
            f"differs from the source's ({', '.join(source.pk)})"
        )
    return ("binary" if binary else "text"), tuple(columns)


__all__ = [
    "FIRST_NORMAL_OID",
    "CopyFormat",
    "FitColumn",
    "FitTable",
    "columns_sql",
    "copy_plan",
    "lossy_message",
]
