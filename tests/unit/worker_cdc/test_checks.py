"""Pre-flight checks and error classification, without a server."""

from __future__ import annotations

from typing import Any

import pytest

from zdtp_worker.contract.errors import ConfigError, DataError, ExitCode, TemporaryError
from zdtp_worker.control.stream_setup import check_replication_privilege, check_wal_level
from zdtp_worker.pg.errors import classify


class FakeConn:
    """Answers each query with the next canned row."""

    def __init__(self, *rows: Any) -> None:
        self.rows = list(rows)
        self.queries: list[str] = []

    def execute(self, query: str, params: Any = None) -> FakeConn:
        self.queries.append(query)
        return self

    def fetchone(self) -> Any:
        return self.rows.pop(0)


@pytest.mark.parametrize("level", ["replica", "minimal"])
def test_wal_level_must_be_logical(level: str) -> None:
    with pytest.raises(ConfigError, match=f"source wal_level is '{level}'") as info:
        check_wal_level(FakeConn((level,)))  # type: ignore[arg-type]
    assert info.value.exit_code == ExitCode.CONFIG_ERROR
    check_wal_level(FakeConn(("logical",)))  # type: ignore[arg-type]


def test_replication_privilege() -> None:
    with pytest.raises(ConfigError, match="role 'app' lacks the REPLICATION privilege"):
        check_replication_privilege(FakeConn(("app", False)))  # type: ignore[arg-type]
    check_replication_privilege(FakeConn(("app", True)))  # type: ignore[arg-type]


class SqlError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"error {sqlstate}\ndetail")
        self.sqlstate = sqlstate


def test_classify_maps_sqlstate_classes() -> None:
    assert isinstance(classify(SqlError("22P02")), DataError)  # invalid text representation
    assert isinstance(classify(SqlError("23502")), DataError)  # not-null violation
    assert isinstance(classify(SqlError("42P01")), DataError)  # target table dropped
    assert isinstance(classify(SqlError("08006")), TemporaryError)  # connection failure
    assert isinstance(classify(SqlError("57P01")), TemporaryError)  # admin shutdown
    assert "\n" not in str(classify(SqlError("40001")))
