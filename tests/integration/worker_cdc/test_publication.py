"""The stream's publication on a real server: partition roots, restarts, someone else's publication."""

from __future__ import annotations

import psycopg
import pytest

from zdtp_worker.contract.errors import ConfigError
from zdtp_worker.contract.spec import TableName
from zdtp_worker.control import publication
from zdtp_worker.incremental.pgoutput import Insert, Relation, decode

pytestmark = pytest.mark.postgres

SCHEMA = """
CREATE TABLE plain (id int PRIMARY KEY, v text);
CREATE TABLE orders (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE orders_eu PARTITION OF orders FOR VALUES IN ('eu');
CREATE TABLE orders_rest PARTITION OF orders DEFAULT;
"""
TABLES = [TableName(schema="public", name="plain"), TableName(schema="public", name="orders")]


def published_inserts(conn: psycopg.Connection, slot: str, pub: str) -> dict[str, int]:
    """Inserts the slot decodes for ``pub``, counted by the table name they are published under.

    (pgoutput also sends a leaf's own Relation message before its root's; changes carry the
    root's oid.)
    """
    rows = conn.execute(
        "SELECT data FROM pg_logical_slot_get_binary_changes(%s, NULL, NULL,"
        " 'proto_version', '1', 'publication_names', %s)",
        (slot, pub),
    ).fetchall()
    names: dict[int, str] = {}
    inserts: dict[str, int] = {}
    for (data,) in rows:
        msg = decode(bytes(data))
        if isinstance(msg, Relation):
            names[msg.oid] = msg.qualified
        elif isinstance(msg, Insert):
            name = names[msg.relation_oid]
            inserts[name] = inserts.get(name, 0) + 1
    return inserts


def test_partitioned_table_streams_under_its_own_name_and_restarts(source_dsn: str) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        # What earlier zdtp versions created: no publish_via_partition_root.
        conn.execute('CREATE PUBLICATION "zdtp_legacy" FOR TABLE plain, orders')
        assert conn.execute(
            "SELECT count(*) FROM pg_publication_tables"
            " WHERE pubname = 'zdtp_legacy' AND tablename = 'orders'"
        ).fetchone() == (0,)  # the check that used to fail: only the leaves are listed
        for _ in range(2):  # a restart runs the same set-up again
            state = publication.ensure(conn, "zdtp_legacy", TABLES)
            assert state.via_root and state.missing() == []
        conn.execute("SELECT pg_create_logical_replication_slot('zdtp_pubtest', 'pgoutput')")
        conn.execute("INSERT INTO orders VALUES (1, 'eu'), (2, 'us'); INSERT INTO plain VALUES (1, 'x')")
        inserts = published_inserts(conn, "zdtp_pubtest", "zdtp_legacy")
        assert inserts == {"public.orders": 2, "public.plain": 1}
        conn.execute("SELECT pg_drop_replication_slot('zdtp_pubtest')")


def test_new_publication_and_added_table(source_dsn: str) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        publication.ensure(conn, "zdtp_new", TABLES[:1])
        state = publication.ensure(conn, "zdtp_new", TABLES)
        assert state.via_root and [m.table.name for m in state.members if m.direct] == ["plain", "orders"]
        assert set(state.actions) == {"insert", "update", "delete", "truncate"}


def test_someone_elses_publication_is_used_but_never_altered(source_dsn: str) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        with pytest.raises(ConfigError, match="publication theirs does not exist"):
            publication.ensure(conn, "theirs", TABLES)
        conn.execute("CREATE PUBLICATION theirs FOR TABLE plain")
        with pytest.raises(ConfigError) as err:
            publication.ensure(conn, "theirs", TABLES)
        message = str(err.value)
        assert "is not zdtp's" in message
        assert 'ALTER PUBLICATION "theirs" ADD TABLE "public"."orders"' in message
        assert 'ALTER PUBLICATION "theirs" SET (publish_via_partition_root = true)' in message
        row = conn.execute("SELECT pubviaroot FROM pg_publication WHERE pubname = 'theirs'").fetchone()
        assert row == (False,)
        conn.execute("ALTER PUBLICATION theirs ADD TABLE orders")
        conn.execute("ALTER PUBLICATION theirs SET (publish_via_partition_root = true)")
        assert publication.ensure(conn, "theirs", TABLES).missing() == []
        # FOR ALL TABLES covers everything.
        conn.execute("CREATE PUBLICATION everything FOR ALL TABLES WITH (publish_via_partition_root = true)")
        assert publication.ensure(conn, "everything", TABLES).missing() == []


def test_someone_elses_publication_with_a_row_filter_or_column_list_is_refused(source_dsn: str) -> None:
    # The full copy takes every row and column; a filtered publication would stream only part of
    # the changes, and the target would drift without an error.
    with psycopg.connect(source_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute(
            "CREATE PUBLICATION filtered FOR TABLE plain WHERE (id > 10), orders (id, region)"
            " WITH (publish_via_partition_root = true)"
        )
        with pytest.raises(ConfigError) as err:
            publication.ensure(conn, "filtered", TABLES)
        message = str(err.value)
        assert 'publish all of "public"."plain": it has a row filter (WHERE) or a column list' in message
        assert 'publish all of "public"."orders"' in message
        conn.execute("ALTER PUBLICATION filtered SET TABLE plain, orders")
        state = publication.ensure(conn, "filtered", TABLES)
        assert state.missing() == [] and state.partial() == []
        # A filter on the partition root covers its leaves too.
        conn.execute("ALTER PUBLICATION filtered SET TABLE plain, orders WHERE (id < 5)")
        with pytest.raises(ConfigError, match=r'publish all of "public"."orders"'):
            publication.ensure(conn, "filtered", TABLES)
