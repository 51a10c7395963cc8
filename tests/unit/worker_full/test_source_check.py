"""The money rule of a stream (no server): refused when source and target print an amount
differently under their lc_monetary, allowed when they print it alike or no column is money."""

from __future__ import annotations

from typing import Any

from zdtp_worker.control.source_check import MONEY_PROBE, stream_money_problem


class FakeSession:
    """Answers the two queries stream_money_problem runs: money columns by oid, and the probe."""

    def __init__(self, probe: tuple[str, str], money: dict[int, list[str]] | None = None) -> None:
        self.probe, self.money = probe, money or {}

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> FakeSession:
        self.rows = [self.probe] if sql == MONEY_PROBE else [(c,) for c in self.money.get(params[0], [])]
        return self

    def fetchone(self) -> Any:
        return self.rows[0]

    def fetchall(self) -> list[Any]:
        return self.rows


def test_different_money_text_is_refused_naming_table_column_and_both_settings() -> None:
    source = FakeSession(("de_DE.UTF-8", "-1.234.567,89 €"), {1: ["price", "fee"]})
    target = FakeSession(("C", "-$1,234,567.89"))
    message = stream_money_problem(source, target, [("shop.orders", 1), ("shop.plain", 2)])
    assert message is not None
    assert message.startswith("shop.orders: column(s) price, fee have type money"), message
    assert "de_DE.UTF-8" in message and "'-$1,234,567.89'" in message and "shop.plain" not in message
    assert "ALTER DATABASE" in message


def test_same_money_text_or_no_money_column_passes() -> None:
    same = ("C.UTF-8", "-$1,234,567.89")
    assert (
        stream_money_problem(FakeSession(same, {1: ["a"]}), FakeSession(("C", same[1])), [("s.t", 1)]) is None
    )
    differ = FakeSession(("de_DE.UTF-8", "x"))
    assert stream_money_problem(differ, FakeSession(("C", "y")), [("s.t", 1)]) is None
