"""The zoo and the digest themselves: every issue-12 class is covered, the zoo builds on both
majors, and the digest sees every kind of difference (so an equal digest means equal data)."""

from __future__ import annotations

import psycopg

from tests.fixtures import digest, schema_zoo
from tests.fixtures.postgres import PgServer


def test_zoo_covers_every_class_with_at_least_15_tables() -> None:
    assert len(schema_zoo.TABLES) >= 15
    assert schema_zoo.covered_classes() == schema_zoo.CLASSES
    assert len(schema_zoo.NAME_63.encode()) == 63


def test_zoo_builds_and_equals_itself(zoo_source: str) -> None:
    with digest.connect(zoo_source) as conn:
        shapes = digest.read_shapes(conn, [schema_zoo.SCHEMA])
        assert sorted(shapes) == sorted(schema_zoo.label(t) for t in schema_zoo.TABLES)
        keyless = {label for label, shape in shapes.items() if shape.row_key is None}
        assert keyless == {"zoo.nokey_plain", "zoo.ri_full_nokey"}
        assert shapes["zoo.nokey_unique"].row_key == ("code",)
        toasted = conn.execute(
            "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = 'zoo.toast_blobs'::regclass"
        ).fetchone()
        assert toasted is not None and toasted[0] > 40 * 2048
        assert digest.read_sequences(conn, ["zoo"])["zoo.order-lines_id_seq"] == 1501
    assert digest.compare(zoo_source, zoo_source, schemas=["zoo"]) == []


def test_digest_reports_each_kind_of_difference(pg_server: PgServer, zoo_source: str) -> None:
    # A second copy of the zoo (same server version as the target tests use) with one change of
    # each kind; the random TOAST payloads differ anyway and are left out of the comparison.
    other = pg_server.create_database("zoo")
    try:
        dsn = pg_server.dsn(other)
        schema_zoo.create(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE zoo.text_key SET v = v + 1 WHERE k = 'ß'")
            conn.execute("DELETE FROM zoo.nokey_plain WHERE a = 3")
            conn.execute("INSERT INTO zoo.ri_full_nokey VALUES (7, 'twin', 1)")
            conn.execute('ALTER TABLE zoo."Order Items" ALTER COLUMN "Qty" TYPE bigint')
            conn.execute("ALTER TABLE zoo.defaults ALTER COLUMN priority DROP DEFAULT")
            conn.execute("UPDATE zoo.scalars_edge SET f8 = 0 WHERE id = 4")  # was -0
            conn.execute("UPDATE zoo.structured SET note = NULL WHERE id = 5")  # was ''
            conn.execute("SELECT setval('zoo.identity_serial_id_seq', 5)")
        tables = [schema_zoo.label(t) for t in schema_zoo.TABLES if t.name != "toast_blobs"]
        problems = "\n".join(digest.compare(zoo_source, dsn, schemas=["zoo"], tables=tables))
        for expected in (
            "zoo.text_key: rows by key (k): 0 missing in target, 0 extra, 1 changed",
            "changed ('ß',): v: source '10' target '11'",
            "zoo.nokey_plain: rows (no key, compared as multisets): 3 missing in target",
            "zoo.ri_full_nokey: rows (no key, compared as multisets): 0 missing in target, 1 extra",
            "zoo.Order Items: column 'Qty' type: source 'integer', target 'bigint'",
            "zoo.defaults: column 'priority' default: source '7', target None",
            "changed ('4',): f8: source '-0' target '0'",
            "changed ('5',): note: source '' target NULL",
            "sequence zoo.identity_serial_id_seq: source next value 702, target 6",
        ):
            assert expected in problems, problems
        assert "toast_blobs" not in problems
    finally:
        pg_server.drop_database(other)
