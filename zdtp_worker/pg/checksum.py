"""Order-independent row count + checksum of a key range, computed by the database.

Each row's text form (``ROW(cols)::text``, identical on both sides thanks to the shared session
settings) is hashed with md5; the first 64 bits are summed as numeric. The sum does not depend
on row order, and a duplicated or missing row changes both the count and the sum, so equal
(count, checksum) on source and target means the same multiset of rows. Chunk checksums add up
to the table checksum. Tests use :func:`checksum_sql` to compare whole tables.

``verify: checksum`` assumes source and target columns print alike; when text COPY moved rows
into differently typed columns (say ``numeric`` into ``numeric(12,2)``) the text forms can differ,
so use ``count`` there.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from zdtp_worker.pg.quoting import ident


def checksum_sql(table_qualified: str, columns: Sequence[str], where: str = "TRUE") -> str:
    row = f"ROW({', '.join(ident(c) for c in columns)})::text"
    return (
        f"SELECT count(*) AS rows, "
        f"coalesce(sum(('x' || substr(md5({row}), 1, 16))::bit(64)::bigint::numeric), 0) AS checksum "
        f"FROM {table_qualified} WHERE {where}"
    )


def format_checksum(total: Decimal | None) -> str | None:
    """Table checksum for the result summary: the sum reduced to 64 bits, as 16 hex digits."""
    if total is None:
        return None
    return f"{int(total) % (1 << 64):016x}"
