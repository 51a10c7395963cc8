"""Keyless REPLICA IDENTITY FULL changes applied by whole-row match on a real target."""

from __future__ import annotations

import psycopg
import pytest

from zdtp_worker.contract.errors import DataError
from zdtp_worker.incremental.pgoutput import UNCHANGED
from zdtp_worker.incremental.rowwise import RowChange, RowwiseTable

pytestmark = pytest.mark.postgres


def row(*values: object) -> list:
    return [None if v is None else v if v is UNCHANGED else str(v).encode() for v in values]


def test_twins_nulls_json_and_unchanged_toast(target_dsn: str) -> None:
    with psycopg.connect(target_dsn) as conn:
        conn.execute("CREATE TABLE k (a int, b text, j json)")
        conn.execute(
            """INSERT INTO k VALUES (1, 'twin', '{"x": 1}'), (1, 'twin', '{"x": 1}'), (NULL, NULL, NULL)"""
        )
        t = RowwiseTable('"public"."k"', ["a", "b", "j"])
        t.changes += [
            RowChange("U", new=row(1, "one", UNCHANGED), old=row(1, "twin", '{"x": 1}')),
            RowChange("U", new=row(2, "was null", None), old=row(None, None, None)),
            RowChange("I", new=row(3, "tab\there", "[1, 2]")),
            RowChange("D", old=row(3, "tab\there", "[1, 2]")),
            RowChange("I", new=row(3, "again", None)),
        ]
        assert t.apply(conn) == 5 and t.changes == []
        got = conn.execute("SELECT a, b, j::text FROM k ORDER BY a, b").fetchall()
        assert got == [
            (1, "one", '{"x": 1}'),
            (1, "twin", '{"x": 1}'),
            (2, "was null", None),
            (3, "again", None),
        ]
        t.changes.append(RowChange("D", old=row(9, "nope", None)))
        with pytest.raises(DataError, match="no row equal to the source's old row to delete"):
            t.apply(conn)
