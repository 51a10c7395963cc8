"""The target side of a CDC stream: one object over one connection, in three parts.

- :mod:`.target_session`: the connection, the lease (session advisory lock) and the stream's row
  in ``zdtp.cdc_state`` (load, commit, advance: the LSN bookkeeping);
- this module: the target tables (read, create, add a column, build a relation's apply shape);
- :mod:`.target_apply`: writing a batch into the open transaction.

They share one connection on purpose: a worker that lost its lease cannot write either.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import psycopg

from zdtp_worker.contract.spec import TableName
from zdtp_worker.control.catalog import TableDef, read_table
from zdtp_worker.incremental.health import Metrics
from zdtp_worker.incremental.only import only
from zdtp_worker.incremental.pgoutput import Relation
from zdtp_worker.incremental.refetch import SourceRows
from zdtp_worker.incremental.staging import Shape, build_shape
from zdtp_worker.incremental.target_apply import BatchWriter, _staged, other_unique
from zdtp_worker.incremental.target_session import LEASE_CLASS, STATE_DDL, TargetSession, lease_key
from zdtp_worker.pg.quoting import ident

__all__ = ["LEASE_CLASS", "STATE_DDL", "Target", "_staged", "lease_key"]

log = logging.getLogger(__name__)


class Target(TargetSession, BatchWriter):
    def __init__(
        self,
        dsn: str,
        *,
        stream: str,
        application_name: str = "zdtp-cdc",
        source_dsn: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.dsn = dsn
        self.stream = stream
        self.application_name = application_name
        self._conn: psycopg.Connection | None = None
        # Rows read back from the source when the target cannot complete a change (see .refetch).
        self.source_rows = SourceRows(source_dsn) if source_dsn else None
        self._batch_xids: Sequence[int] = ()  # the applying batch's source transactions
        self.metrics = metrics
        self.refetched = 0  # in the open transaction: rows read from the source and written
        self.refetch_gone = 0  # in the open transaction: keys the source no longer had
        self.tables: dict[TableName, TableDef] = {}
        self._stage_seq = 0
        self.commit_lsn = 0
        self.end_lsn = 0
        self.confirm_limit: int | None = 0
        # Batches hold binary-mode values (length-prefixed send format): COPY them as binary.
        self.binary = False

    def close(self) -> None:
        if self.source_rows is not None:
            self.source_rows.close()
        self._close_session()

    # -- tables ---------------------------------------------------------------------------
    def table(self, name: TableName) -> TableDef | None:
        cached = self.tables.get(name)
        if cached is not None:
            return cached
        info = read_table(self.conn, name)
        if info is not None:
            self.tables[name] = info
        return info

    def create_table(
        self, name: TableName, columns: list[tuple[str, str, bool]], pk: tuple[str, ...]
    ) -> None:
        """Create a missing target table (columns: name, type, not null) keyed like the source.

        ``pk`` is the stream's key (primary key or unique NOT NULL index on the source); empty
        for a keyless REPLICA IDENTITY FULL table. Generated columns are added afterwards by
        the column follower, as generated columns.
        """
        defs = [f"{ident(n)} {t}{' NOT NULL' if nn else ''}" for n, t, nn in columns]
        if pk:
            defs.append(f"PRIMARY KEY ({', '.join(ident(k) for k in pk)})")
        self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(name.schema_)}")
        self.conn.execute(f"CREATE TABLE IF NOT EXISTS {name.qualified} ({', '.join(defs)})")
        self.tables.pop(name, None)

    def add_column(self, name: TableName, column: str, type_sql: str) -> None:
        log.warning("target %s: adding column %s %s (added on the source)", name, column, type_sql)
        self.conn.execute(f"ALTER TABLE {name.qualified} ADD COLUMN IF NOT EXISTS {ident(column)} {type_sql}")
        self.tables.pop(name, None)

    def shape(self, relation: Relation, target: TableName, key_names: tuple[str, ...]) -> Shape:
        """Build the relation's apply statements and create its staging table (temporary)."""
        info = self.table(target)
        assert info is not None
        self._stage_seq += 1
        shape, ddl = build_shape(
            relation,
            target=target,
            key_names=key_names,
            column_types=info.column_types,
            seq=self._stage_seq,
            generated=frozenset(c.name for c in info.columns if c.generated),
            only=only(self.conn, target),
            other_unique=other_unique(self.conn, target, key_names),
        )
        self.conn.execute(ddl)
        return shape
