"""Keep the target's sequences at or ahead of the source's while streaming.

Logical replication does not carry sequences: rows arrive with ids the source's sequence handed
out, but the target's own sequence stays where the copy left it, so after a cut-over to the
target new rows would reuse ids. The stream therefore moves each sequence behind a streamed
table's columns (identity, serial/owned, or one a default calls) on the target to at least the
source's current value, periodically and when it stops.

Reading a source sequence gives its position *now*, which is at or beyond every id in the
changes applied so far, so after each round the target is ahead of what it holds. A target
sequence already further along (ids handed out on the target) is never moved back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg

from zdtp_worker.contract.spec import TableName

log = logging.getLogger(__name__)

# Sequences a table's columns draw from: owned (serial, identity) and called by defaults.
_SEQUENCES_SQL = """
WITH owned AS (
  SELECT d.objid AS seq, a.attname
  FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
  WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
    AND d.refobjid = %(rel)s::regclass AND d.deptype IN ('a', 'i')
), used AS (
  SELECT d.refobjid AS seq, a.attname
  FROM pg_depend d JOIN pg_attrdef ad ON ad.oid = d.objid
  JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
  WHERE d.classid = 'pg_attrdef'::regclass AND d.refclassid = 'pg_class'::regclass
    AND ad.adrelid = %(rel)s::regclass
)
SELECT DISTINCT ON (c.oid) quote_ident(n.nspname) || '.' || quote_ident(c.relname), x.attname,
       s.seqincrement
FROM (SELECT * FROM owned UNION ALL SELECT * FROM used) x
JOIN pg_class c ON c.oid = x.seq AND c.relkind = 'S' JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_sequence s ON s.seqrelid = c.oid
ORDER BY c.oid
"""


@dataclass(frozen=True)
class SequenceLink:
    source: str  # quoted qualified name on the source
    column: str
    increment: int

    @property
    def ascending(self) -> bool:
        return self.increment > 0


def sequences_of(conn: psycopg.Connection, table: TableName) -> list[SequenceLink]:
    rows = conn.execute(_SEQUENCES_SQL, {"rel": table.qualified}).fetchall()
    return [SequenceLink(r[0], r[1], int(r[2])) for r in rows]


def _next_value(last: int, called: bool, increment: int) -> int:
    return last + increment if called else last


def _target_sequence(conn: psycopg.Connection, target: TableName, link: SequenceLink) -> str | None:
    row = conn.execute("SELECT pg_get_serial_sequence(%s, %s)", (target.qualified, link.column)).fetchone()
    if row and row[0]:
        return str(row[0])
    row = conn.execute("SELECT to_regclass(%s)::text", (link.source,)).fetchone()
    return str(row[0]) if row and row[0] else None


@dataclass
class SequenceKeeper:
    """Remembers which sequences belong to the stream's tables; :meth:`sync` moves them."""

    tables: dict[TableName, TableName]  # source -> target
    links: dict[TableName, list[SequenceLink]] | None = None
    warned: set[str] | None = None

    def sync(self, src: psycopg.Connection, tgt: psycopg.Connection) -> dict[str, int]:
        """One round; returns {target sequence: value set}. ``setval`` is not transactional."""
        if self.links is None:
            self.links = {s: sequences_of(src, s) for s in self.tables}
            self.warned = set()
        moved: dict[str, int] = {}
        for source, links in self.links.items():
            for link in links:
                value = self._sync_one(src, tgt, self.tables[source], link)
                if value is not None:
                    moved[link.source] = value
        return moved

    def _sync_one(
        self, src: psycopg.Connection, tgt: psycopg.Connection, target: TableName, link: SequenceLink
    ) -> int | None:
        row = src.execute(f"SELECT last_value, is_called FROM {link.source}").fetchone()
        if row is None:
            return None
        # Compared by the next value each side hands out: a RESTART / setval(.., false) on the
        # source leaves it "not called" at a value the target must also reach.
        value, called = int(row[0]), bool(row[1])
        wanted = _next_value(value, called, link.increment)
        tgt_seq = _target_sequence(tgt, target, link)
        if tgt_seq is None:
            assert self.warned is not None
            if link.source not in self.warned:
                self.warned.add(link.source)
                log.warning(
                    "target %s has no sequence for column %s (source %s): ids will not be kept ahead",
                    target,
                    link.column,
                    link.source,
                )
            return None
        have = tgt.execute(
            f"SELECT last_value, is_called, (SELECT seqincrement FROM pg_sequence"
            f" WHERE seqrelid = %s::regclass) FROM {tgt_seq}",
            (tgt_seq,),
        ).fetchone()
        if have is not None:
            current = _next_value(int(have[0]), bool(have[1]), int(have[2]))
            if (current >= wanted) if link.ascending else (current <= wanted):
                return None
        tgt.execute("SELECT setval(%s::regclass, %s, %s)", (tgt_seq, value, called))
        return value
