"""Held-out schemas, full copy: shapes the zoo does not have, each copied by three workers into a
target zdtp creates, then compared by the per-row digest of every column (or refused before
anything is written, naming the table and the fix)."""

from __future__ import annotations

import re

import pytest

from tests.integration.schema_zoo import held_out as ho

INHERITANCE_SQL = """
CREATE SCHEMA ho;
CREATE TABLE ho.city (id int PRIMARY KEY, name text NOT NULL, population int CHECK (population >= 0));
CREATE TABLE ho.capital (state char(2) NOT NULL) INHERITS (ho.city);
ALTER TABLE ho.capital ADD PRIMARY KEY (id);
CREATE TABLE ho.village () INHERITS (ho.city);
CREATE TABLE ho.tagged (tag text);
CREATE TABLE ho.tagged_village (id int PRIMARY KEY) INHERITS (ho.village, ho.tagged);
INSERT INTO ho.city SELECT i, 'city ' || i, i * 10 FROM generate_series(1, 900) i;
INSERT INTO ho.capital SELECT i, 'cap ' || i, i, 'S' || (i % 9) FROM generate_series(1001, 1100) i;
INSERT INTO ho.village SELECT i, 'v ' || i, i FROM generate_series(2001, 2050) i;
INSERT INTO ho.tagged_village SELECT i, 'tv ' || i, i, 't' || i FROM generate_series(3001, 3020) i;
INSERT INTO ho.tagged VALUES ('lonely');
ANALYZE;
"""


@pytest.mark.parametrize("verify", ["count", "checksum"])
def test_inheritance_is_reproduced_and_rows_copied_once(
    empty_source: str, target_dsn: str, verify: str
) -> None:
    # INHERITS, not partitioning (PostgreSQL docs 5.11): SELECT from the parent includes its
    # children's rows. Each table is copied ONLY (its own rows once) and the links are made on the
    # target, so the parent reads the same rows there (the digest reads parents without ONLY);
    # multiple inheritance included. Checksum verification reads ONLY the target's parent too.
    ho.run_sql(empty_source, INHERITANCE_SQL)
    ho.copy_and_compare(empty_source, target_dsn, verify=verify)
    own = "SELECT count(*) FROM ONLY ho.city"
    assert ho.rows(target_dsn, own) == ho.rows(empty_source, own) == [(900,)]
    links = (
        "SELECT inhrelid::regclass::text, inhparent::regclass::text, inhseqno FROM pg_inherits ORDER BY 1, 3"
    )
    assert ho.rows(target_dsn, links) == ho.rows(empty_source, links)


def test_dropped_columns_before_the_copy(empty_source: str, target_dsn: str) -> None:
    ho.run_sql(
        empty_source,
        ho.GAPPY_TABLE,
        "INSERT INTO ho.gappy (id, a, b, c, d) VALUES (0, NULL, 'late', NULL, NULL); ANALYZE",
    )
    ho.copy_and_compare(empty_source, target_dsn)


def test_existing_target_with_other_column_order(empty_source: str, target_dsn: str) -> None:
    ho.run_sql(
        empty_source,
        """
        CREATE SCHEMA ho;
        CREATE TABLE ho.ordered (id int PRIMARY KEY, a text, b int, c timestamptz, d numeric(10,2));
        INSERT INTO ho.ordered
        SELECT i, 'a' || i, i * 2, timestamptz '2024-01-01' + i * interval '1 min', i / 7.0
        FROM generate_series(1, 1500) i;
        ANALYZE;
        """,
    )
    ho.run_sql(
        target_dsn,
        """
        CREATE SCHEMA ho;
        CREATE TABLE ho.ordered (d numeric(10,2), c timestamptz, zzz text DEFAULT 'z', b int, a text,
                                 id int PRIMARY KEY);
        ALTER TABLE ho.ordered DROP COLUMN zzz;
        """,
    )
    ho.harness.assert_all_ok(ho.full_copy(empty_source, target_dsn))
    ho.digest.assert_same(empty_source, target_dsn, schemas=["ho"], sequences="skip", shape=False)


def test_multi_level_partitions(empty_source: str, target_dsn: str) -> None:
    ho.run_sql(empty_source, ho.multi_level_partitions(3000))
    ho.copy_and_compare(empty_source, target_dsn)


MORE_TYPES_SQL = r"""
        CREATE SCHEMA ho;
        CREATE TYPE ho.color AS ENUM ('red', 'green');
        CREATE DOMAIN ho.small_pos AS int CHECK (VALUE > 0);
        CREATE DOMAIN ho.int_list AS int[] CHECK (cardinality(VALUE) < 10);
        CREATE TYPE ho.pair AS (a int, b text);
        CREATE TABLE ho.types (
            id int PRIMARY KEY, mr int4multirange, dmr datemultirange, colors ho.color[],
            smalls ho.small_pos[],
            il ho.int_list, pairs ho.pair[], tsv tsvector, tsq tsquery, m money, o oid, ch "char",
            lsn pg_lsn, iv interval, vb bit varying(20), pt point, bx box, js jsonpath, u uuid
        );
        INSERT INTO ho.types VALUES
        (1, '{[1,3),[5,9)}', '{}', '{red,green}', '{1,2}', '{1,2,3}',
         ARRAY[ROW(1,'a'), ROW(NULL,'b,"c')]::ho.pair[],
         'a fat cat:1A sat', 'fat & !rat', '-92233720368547758.08', 4294967295, 'x',
         'FFFFFFFF/FFFFFFFF', '-1 year 2 days 00:00:00.000001', B'1011', '(1.5,NaN)', '((0,0),(1,1))',
         '$.a[*] ? (@ > 1)', NULL),
        (2, '{}', '{[2020-01-01,infinity)}', '{}', '{}', '{}', '{}', '', 'a', '0', 0, E'\\001',
         '0/0', '0', B'', '(0,0)', '((1,1),(1,1))', '$', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
        (3, NULL, NULL, ARRAY[NULL]::ho.color[], NULL, NULL, ARRAY[NULL]::ho.pair[], NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        INSERT INTO ho.types (id, mr, m, tsv)
        SELECT 100 + i, int4multirange(int4range(i, i + 2), int4range(i + 5, i + 7)), i * 1.25,
               to_tsvector('simple', 'row ' || i)
        FROM generate_series(1, 900) i;
        ANALYZE;
        """


def test_more_types(empty_source: str, target_dsn: str) -> None:
    ho.run_sql(
        empty_source,
        MORE_TYPES_SQL,
    )
    ho.copy_and_compare(empty_source, target_dsn)


def test_regclass_and_regtype_columns(empty_source: str, target_dsn: str) -> None:
    # A reg* value is an OID, and the same object has another OID on the target: binary COPY would
    # copy the number (pointing at nothing, or at another object). Copied by name instead (the
    # objects named must exist on the target: ho.audit does, zdtp created it).
    ho.run_sql(
        empty_source,
        """
        CREATE SCHEMA ho;
        CREATE TABLE ho.audit (
            id int PRIMARY KEY, rel regclass, typ regtype, fn regprocedure, ns regnamespace, rels regclass[]
        );
        INSERT INTO ho.audit VALUES
            (1, 'ho.audit', 'int4[]', 'now()', 'ho', '{ho.audit,pg_class}'),
            (2, 'pg_class', 'timestamptz', 'abs(int)', 'public', '{}');
        ANALYZE;
        """,
    )
    ho.copy_and_compare(empty_source, target_dsn)


def test_same_name_in_two_schemas_and_reserved_schema_name(empty_source: str, target_dsn: str) -> None:
    ho.run_sql(
        empty_source,
        """
        CREATE SCHEMA ho; CREATE SCHEMA "order";
        CREATE TABLE ho.items (id int PRIMARY KEY, v text);
        CREATE TABLE "order".items (id int PRIMARY KEY, w int, v text);
        CREATE TABLE "order"."table" (id int PRIMARY KEY);
        INSERT INTO ho.items SELECT i, 'ho' || i FROM generate_series(1, 700) i;
        INSERT INTO "order".items SELECT i, -i, 'order' || i FROM generate_series(1, 900) i;
        INSERT INTO "order"."table" SELECT i FROM generate_series(1, 10) i;
        ANALYZE;
        """,
    )
    ho.harness.assert_all_ok(ho.full_copy(empty_source, target_dsn, include=["ho.*", '"order".*']))
    ho.digest.assert_same(empty_source, target_dsn, schemas=["ho", "order"], sequences="equal")


BOOKING_SQL = """
CREATE SCHEMA ho;
CREATE EXTENSION IF NOT EXISTS btree_gist;
CREATE TABLE ho.booking (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, room int NOT NULL,
    during tsrange NOT NULL, code text UNIQUE DEFERRABLE,
    EXCLUDE USING gist (room WITH =, during WITH &&));
INSERT INTO ho.booking SELECT i, i % 10, tsrange(timestamp '2024-01-01' + i * interval '1 day',
    timestamp '2024-01-01' + (i + 10) * interval '1 day'), 'c' || i FROM generate_series(1, 600) i;
CREATE TABLE ho.plain (id int PRIMARY KEY, v text);
INSERT INTO ho.plain SELECT i, 'p' || i FROM generate_series(1, 1000) i;
ANALYZE;
"""


def test_exclusion_constraint_needing_an_extension_is_refused_before_copying(
    empty_source: str, target_dsn: str
) -> None:
    # The EXCLUDE constraint needs btree_gist's operator class for `int WITH =`; the target lacks
    # the extension. Found before any row is copied (not after the load, when keys are built).
    ho.run_sql(empty_source, BOOKING_SQL)
    finished = ho.full_copy(empty_source, target_dsn)
    booking = [f for f in finished if any(str(t.source) == "ho.booking" for t in f.spec.tables)]
    assert [f.returncode for f in booking] == [65] * len(booking), [f.describe() for f in finished]
    message = booking[0].stderr
    assert "ho.booking" in message and "gist" in message and "extension" in message, message
    # Nothing of the refused table on the target (the other table's worker may have copied it).
    assert ho.rows(target_dsn, "SELECT to_regclass('ho.booking')") == [(None,)]


def test_exclusion_and_deferrable_constraints(empty_source: str, target_dsn: str) -> None:
    ho.run_sql(empty_source, BOOKING_SQL)
    ho.run_sql(target_dsn, "CREATE EXTENSION btree_gist")
    ho.copy_and_compare(empty_source, target_dsn)
    kinds = ho.rows(
        target_dsn,
        "SELECT contype::text, condeferrable, condeferred FROM pg_constraint"
        " WHERE conrelid = 'ho.booking'::regclass AND contype IN ('p', 'u', 'x') ORDER BY 1",
    )
    assert kinds == [("p", True, True), ("u", True, False), ("x", False, False)], kinds


def test_row_level_security_on_the_source_is_refused(empty_source: str, target_dsn: str) -> None:
    # The source role sees a subset of the rows: copying would be silently partial.
    role = "ho_reader_" + empty_source.rsplit("_", 1)[-1]
    ho.run_sql(
        empty_source,
        f"""
        CREATE SCHEMA ho;
        CREATE TABLE ho.secret (id int PRIMARY KEY, tenant int NOT NULL, v text);
        INSERT INTO ho.secret SELECT i, i % 3, 'v' || i FROM generate_series(1, 900) i;
        ALTER TABLE ho.secret ENABLE ROW LEVEL SECURITY;
        CREATE POLICY only_tenant_1 ON ho.secret FOR SELECT USING (tenant = 1);
        CREATE ROLE {role} LOGIN PASSWORD 'pw';
        GRANT USAGE ON SCHEMA ho TO {role};
        GRANT SELECT ON ho.secret TO {role};
        ANALYZE;
        """,
    )
    try:
        reader = re.sub(r"//[^@]*@", f"//{role}:pw@", empty_source)
        specs = ho.harness.plan(empty_source, ho.config("ho-rls"))
        finished = ho.harness.run_full_workers(specs, source_dsn=reader, target_dsn=target_dsn)
        failed = [f for f in finished if f.returncode != 0]
        assert failed and all(f.returncode == 65 for f in failed), [f.describe() for f in finished]
        message = failed[0].stderr
        assert "ho.secret" in message and "row-level security" in message and "BYPASSRLS" in message, message
        assert ho.rows(target_dsn, "SELECT to_regclass('ho.secret')") == [(None,)]
    finally:
        ho.run_sql(empty_source, f"DROP OWNED BY {role}; DROP ROLE {role}")


def test_user_collation_on_a_key(empty_source: str, target_dsn: str) -> None:
    # A text key in a user-defined collation: zdtp does not create collations (their locales
    # depend on the target's build), so a target without it is refused before any row is copied,
    # naming the collation; once it exists there, the copy (chunked by that key) is exact.
    ho.run_sql(
        empty_source,
        """
        CREATE SCHEMA ho;
        CREATE COLLATION ho.bytes (locale = 'C.utf8');
        CREATE TABLE ho.coll_key (k text COLLATE ho.bytes PRIMARY KEY, n int NOT NULL);
        INSERT INTO ho.coll_key SELECT w || '-' || i, i
        FROM unnest(ARRAY['', 'a', 'A', 'ä', 'ß', 'ss', 'é', '_', '9', '10']) w, generate_series(1, 120) i;
        ANALYZE;
        """,
    )
    refused = ho.full_copy(empty_source, target_dsn)
    failed = [f for f in refused if f.returncode != 0]
    assert failed and all(f.returncode == 65 for f in failed), [f.describe() for f in refused]
    assert 'collation "ho.bytes"' in failed[0].stderr and "create that collation" in failed[0].stderr
    assert ho.rows(target_dsn, "SELECT to_regclass('ho.coll_key')") == [(None,)]

    ho.run_sql(target_dsn, "CREATE SCHEMA ho; CREATE COLLATION ho.bytes (locale = 'C.utf8')")
    ho.copy_and_compare(empty_source, target_dsn, chunk_rows=97)


def test_columns_or_sequences_the_role_cannot_read_are_refused_before_writing(
    empty_source: str, target_dsn: str
) -> None:
    # Column privileges: the role may read some columns only; a serial's sequence not granted.
    # Found before anything is written (the COPY would fail half-way, the sequences at the end).
    role = "ho_partial_" + empty_source.rsplit("_", 1)[-1]
    ho.run_sql(
        empty_source,
        f"""
        CREATE SCHEMA ho;
        CREATE TABLE ho.partial (id int PRIMARY KEY, v text, secret text);
        CREATE TABLE ho.counted (id serial PRIMARY KEY, v text);
        INSERT INTO ho.partial SELECT i, 'v', 's' FROM generate_series(1, 100) i;
        INSERT INTO ho.counted (v) SELECT 'v' FROM generate_series(1, 100) i;
        CREATE ROLE {role} LOGIN PASSWORD 'pw';
        GRANT USAGE ON SCHEMA ho TO {role};
        GRANT SELECT (id, v) ON ho.partial TO {role};
        GRANT SELECT ON ho.counted TO {role};
        ANALYZE;
        """,
    )
    try:
        reader = re.sub(r"//[^@]*@", f"//{role}:pw@", empty_source)
        specs = ho.harness.plan(empty_source, ho.config("ho-privs"))
        finished = ho.harness.run_full_workers(specs, source_dsn=reader, target_dsn=target_dsn)
        errors = "\n".join(f.stderr for f in finished if f.returncode != 0)
        assert {f.returncode for f in finished} <= {0, 78}, [f.describe() for f in finished]
        assert "ho.partial" in errors and "secret" in errors and "GRANT SELECT" in errors, errors
        assert "ho.counted" in errors and "counted_id_seq" in errors, errors
        tables = "SELECT to_regclass('ho.partial'), to_regclass('ho.counted')"
        assert ho.rows(target_dsn, tables) == [(None, None)]
    finally:
        ho.run_sql(empty_source, f"DROP OWNED BY {role}; DROP ROLE {role}")


def test_exotic_key_types_chunk_without_loss(empty_source: str, target_dsn: str) -> None:
    # Chunk and worker bounds on keys whose values are edge cases of their type's order: float8
    # with ±Infinity and NaN (sorts above everything), numeric NaN, timestamps ±infinity, an enum
    # whose sort order differs from its creation order (ADD VALUE BEFORE), bytea, a composite
    # key mixing them. Small chunks, so many bounds fall on such values.
    ho.run_sql(
        empty_source,
        # Each script is one transaction: new enum labels must be committed before use.
        "CREATE SCHEMA ho; CREATE TYPE ho.level AS ENUM ('low', 'high')",
        "ALTER TYPE ho.level ADD VALUE 'mid' BEFORE 'high'",
        "ALTER TYPE ho.level ADD VALUE 'lowest' BEFORE 'low'",
        """
        CREATE TABLE ho.fkey (k float8 PRIMARY KEY, v text);
        INSERT INTO ho.fkey SELECT i / 7.0, 'v' FROM generate_series(-300, 300) i;
        INSERT INTO ho.fkey VALUES ('NaN', 'nan'), ('Infinity', 'inf'), ('-Infinity', '-inf'),
            (1e-320, 'denormal'), (-1.7976931348623157e308, 'min');
        CREATE TABLE ho.nkey (k numeric PRIMARY KEY, v text);
        INSERT INTO ho.nkey SELECT i / 3.0, 'v' FROM generate_series(-300, 300) i;
        INSERT INTO ho.nkey VALUES ('NaN', 'nan'), ('Infinity', 'inf'), ('-Infinity', '-inf'),
            (1e-100, 'tiny');
        CREATE TABLE ho.tkey (k timestamptz PRIMARY KEY, v text);
        INSERT INTO ho.tkey SELECT timestamptz '2000-01-01 00:00:00+00' + i * interval '1 hour 1 second', 'v'
        FROM generate_series(1, 500) i;
        INSERT INTO ho.tkey VALUES ('infinity', 'inf'), ('-infinity', '-inf'),
            ('4713-01-01 00:00:00+00 BC', 'bc');
        CREATE TABLE ho.ekey (lvl ho.level NOT NULL, n int NOT NULL, b bytea NOT NULL, v text,
                              PRIMARY KEY (lvl, b, n));
        INSERT INTO ho.ekey SELECT l, i, int4send(i % 37), 'v'
        FROM unnest(enum_range(NULL::ho.level)) l, generate_series(1, 150) i;
        ANALYZE;
        """,
    )
    ho.copy_and_compare(empty_source, target_dsn, chunk_rows=41)


def test_not_valid_constraints_with_violating_rows(empty_source: str, target_dsn: str) -> None:
    # CHECK / domain constraints added NOT VALID: rows older than the constraint violate it on
    # the source. COPY checks every value, so they are not reproduced on the target (a domain's
    # made zdtp's CREATE DOMAIN fail with a syntax error: it has no NOT VALID clause).
    ho.run_sql(
        empty_source,
        """
        CREATE SCHEMA ho;
        CREATE DOMAIN ho.code AS text;
        CREATE TABLE ho.legacy (id int PRIMARY KEY, qty int, code ho.code);
        INSERT INTO ho.legacy SELECT i, i - 50, 'c' || i FROM generate_series(1, 300) i;
        INSERT INTO ho.legacy VALUES (1000, 1, 'lowercase-bad');
        ALTER TABLE ho.legacy ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID;
        ALTER DOMAIN ho.code ADD CONSTRAINT code_short CHECK (length(VALUE) < 6) NOT VALID;
        ALTER DOMAIN ho.code ADD CONSTRAINT code_not_empty CHECK (VALUE <> '');
        ANALYZE;
        """,
    )
    ho.copy_and_compare(empty_source, target_dsn)
    # Valid ones still are: the domain's other CHECK is on the target.
    domain = "SELECT conname FROM pg_constraint WHERE contypid = 'ho.code'::regtype ORDER BY 1"
    assert ho.rows(target_dsn, domain) == [("code_not_empty",)]
