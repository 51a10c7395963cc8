"""Target DDL builders (pure): what zdtp runs to recreate a source table on the target."""

from __future__ import annotations

from zdtp_worker.pg import ddl
from zdtp_worker.pg.shape import (
    ColumnShape,
    ConstraintShape,
    IndexShape,
    PartitionShape,
    SequenceShape,
    TableShape,
    TypeShape,
)

SEQ = SequenceShape(
    "app", "t_id_seq", "bigint", 1, 1, 1, 9223372036854775807, 1, False, column="id", identity=True
)
SERIAL = SequenceShape("app", "t n seq", "integer", 10, -2, -100, 10, 5, True, column="n")


def _shape(**kw: object) -> TableShape:
    base: dict = {
        "schema": "app",
        "name": "t",
        "relkind": "r",
        "unlogged": False,
        "columns": (
            ColumnShape("id", "bigint", True, identity="a"),
            ColumnShape("n", "integer", True, default_sql="nextval('app.\"t n seq\"'::regclass)"),
            ColumnShape("Total", "numeric", False, generated="s", generation_sql="(n * 2)"),
            ColumnShape("k", "text", False, collation='pg_catalog."C"'),
        ),
        "constraints": (
            ConstraintShape("t_u", "u", "UNIQUE (k)"),
            ConstraintShape("t_pkey", "p", "PRIMARY KEY (id)"),
            ConstraintShape("t_check", "c", "CHECK ((n > 0))"),
        ),
        "unique_indexes": (IndexShape("t_lower_k", "USING btree (lower(k)) WHERE (n > 1)"),),
        "sequences": (SEQ, SERIAL),
    }
    return TableShape(**{**base, **kw})


def test_table_columns_identity_generated_collation_checks() -> None:
    sql = ddl.create_table_sql(_shape(), schema="Tgt Schema", name="t.x", with_keys=False)
    assert sql.startswith('CREATE TABLE "Tgt Schema"."t.x" (')
    assert (
        '"id" bigint GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME "app"."t_id_seq" START WITH 1 INCREMENT BY 1'
        in sql
    )
    assert '"n" integer DEFAULT nextval(\'app."t n seq"\'::regclass) NOT NULL' in sql
    assert '"Total" numeric GENERATED ALWAYS AS ((n * 2)) STORED' in sql
    assert '"k" text COLLATE pg_catalog."C"' in sql
    assert 'CONSTRAINT "t_check" CHECK ((n > 0))' in sql
    assert "PRIMARY KEY" not in sql and "UNIQUE" not in sql  # after the load
    with_keys = ddl.create_table_sql(_shape(), schema="app", name="t", with_keys=True)
    assert with_keys.index("PRIMARY KEY") < with_keys.index("UNIQUE")  # the primary key first


def test_keys_after_load_keep_names_unless_taken() -> None:
    shape = _shape()
    assert ddl.key_sql(shape, schema="app", name="t") == [
        'ALTER TABLE "app"."t" ADD CONSTRAINT "t_pkey" PRIMARY KEY (id)',
        'ALTER TABLE "app"."t" ADD CONSTRAINT "t_u" UNIQUE (k)',
        'CREATE UNIQUE INDEX "t_lower_k" ON "app"."t" USING btree (lower(k)) WHERE (n > 1)',
    ]
    renamed = ddl.key_sql(shape, schema="app", name="t2", taken={"t_pkey", "t_lower_k"})
    assert renamed[0] == 'ALTER TABLE "app"."t2" ADD PRIMARY KEY (id)'
    assert renamed[2] == 'CREATE UNIQUE INDEX ON "app"."t2" USING btree (lower(k)) WHERE (n > 1)'
    assert ddl.key_names(shape) == ["t_pkey", "t_u", "t_lower_k"]


def test_sequences_and_ownership() -> None:
    assert ddl.create_sequence_sql(SERIAL) == (
        'CREATE SEQUENCE IF NOT EXISTS "app"."t n seq" AS integer START WITH 10 INCREMENT BY -2 '
        "MINVALUE -100 MAXVALUE 10 CACHE 5 CYCLE"
    )
    # Identity sequences come with their column; only the serial one is OWNED BY explicitly.
    assert ddl.own_sequences_sql(_shape(), schema="s", name="t") == [
        'ALTER SEQUENCE "app"."t n seq" OWNED BY "s"."t"."n"'
    ]


def test_types() -> None:
    assert ddl.create_type_sql(TypeShape("app", "mood", "e", labels=("sad", "it's ok"))) == (
        "CREATE TYPE \"app\".\"mood\" AS ENUM ('sad', 'it''s ok')"
    )
    domain = TypeShape(
        "app",
        "amount",
        "d",
        base_sql="numeric(12,2)",
        not_null=True,
        default_sql="0",
        checks=(("positive", "CHECK ((VALUE >= (0)::numeric))"),),
    )
    assert ddl.create_type_sql(domain) == (
        'CREATE DOMAIN "app"."amount" AS numeric(12,2) DEFAULT 0 NOT NULL '
        'CONSTRAINT "positive" CHECK ((VALUE >= (0)::numeric))'
    )
    composite = TypeShape(
        "app", "addr", "c", attributes=(("street", "text", 'pg_catalog."C"'), ("zip", "integer", None))
    )
    assert ddl.create_type_sql(composite) == (
        'CREATE TYPE "app"."addr" AS ("street" text COLLATE pg_catalog."C", "zip" integer)'
    )
    rng = TypeShape("app", "floatrange", "r", base_sql="double precision", subtype_diff="float8mi")
    assert ddl.create_type_sql(rng) == (
        'CREATE TYPE "app"."floatrange" AS RANGE (SUBTYPE = double precision, SUBTYPE_DIFF = float8mi)'
    )


def test_partitions_nested_in_the_target_schema() -> None:
    shape = _shape(
        relkind="p",
        partkey_sql="LIST (region)",
        partitions=(
            PartitionShape(
                "src",
                "t_eu",
                "FOR VALUES IN ('de', 'fr')",
                "RANGE (id)",
                (PartitionShape("src", "t_eu_low", "FOR VALUES FROM (MINVALUE) TO (100)"),),
            ),
            PartitionShape("src", "t_other", "DEFAULT"),
        ),
        unlogged=True,
    )
    assert ddl.create_table_sql(shape, schema="s", name="t", with_keys=False).endswith(
        ") PARTITION BY LIST (region)"
    )
    assert ddl.create_table_sql(shape, schema="s", name="t", with_keys=False).startswith(
        "CREATE UNLOGGED TABLE"
    )
    assert ddl.create_partitions_sql(shape, schema="s", name="t") == [
        'CREATE TABLE "s"."t_eu" PARTITION OF "s"."t" FOR VALUES IN (\'de\', \'fr\') PARTITION BY RANGE (id)',
        'CREATE TABLE "s"."t_eu_low" PARTITION OF "s"."t_eu" FOR VALUES FROM (MINVALUE) TO (100)',
        'CREATE TABLE "s"."t_other" PARTITION OF "s"."t" DEFAULT',
    ]


def test_replica_identity() -> None:
    from dataclasses import replace

    shape = _shape()
    assert ddl.replica_identity_sql(shape, schema="s", name="t") is None  # default
    full = replace(shape, replica_identity="f")
    assert ddl.replica_identity_sql(full, schema="s", name="t") == 'ALTER TABLE "s"."t" REPLICA IDENTITY FULL'
    idx = replace(shape, replica_identity="i", replica_identity_index="t_u")
    assert ddl.replica_identity_sql(idx, schema="s", name="t") == (
        'ALTER TABLE "s"."t" REPLICA IDENTITY USING INDEX "t_u"'
    )
    assert ddl.replica_identity_sql(idx, schema="s", name="t", taken={"t_u"}) is None  # renamed index
