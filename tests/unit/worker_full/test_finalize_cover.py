"""The last worker of a split table builds its keys: do the finished key ranges tile the key space?"""

from __future__ import annotations

import pytest

from zdtp_worker.control.row_checksum import covers_all


@pytest.mark.parametrize(
    ("ranges", "covered"),
    [
        ([(None, None)], True),  # the whole table, one worker
        ([(None, [10]), ([10], [20]), ([20], None)], True),
        ([([20], None), (None, [10]), ([10], [20])], True),  # any finishing order
        ([(None, [10]), ([20], None)], False),  # a gap: [10, 20) still copying
        ([(None, [10]), ([10], [20])], False),  # open top end missing
        ([([10], None)], False),  # open bottom end missing
        ([(None, ["a", 1]), (["a", 1], None)], True),  # composite keys
        ([], False),
    ],
)
def test_covers_all(ranges: list, covered: bool) -> None:
    assert covers_all(ranges) is covered
