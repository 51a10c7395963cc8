"""The DML and DDL workload a stream over the zoo must survive, step by step.

Each :class:`Step` is a list of scripts; each script runs as one call on an autocommit
connection (explicit ``BEGIN … COMMIT/ROLLBACK`` inside a script makes it one transaction; a
script without them is one implicit transaction). The steps follow issue 12's list: primary-key
updates, delete + re-insert, updates that leave TOASTed values unchanged, savepoint rollback, a
rolled-back transaction, TRUNCATE, a 100k-row transaction, cross-partition moves, ADD COLUMN with
a default and safe widenings (int→bigint, varchar(n)→larger, numeric precision up). Edge values
(NaN, ±infinity, ``\\N``, -0) and generated/default/identity columns also travel through the stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from tests.fixtures.schema_zoo import NAME_63

BULK_ROWS = 100_000


@dataclass(frozen=True)
class Step:
    name: str
    scripts: tuple[str, ...]

    def run(self, dsn: str) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for script in self.scripts:
                conn.execute(script)


def _step(name: str, *scripts: str) -> Step:
    return Step(name, tuple(s.strip() for s in scripts))


_SCALAR_COLS = (
    "n, n_scaled, f8, f4, ts, tstz, d, iv, t, ttz, ip, net, mac, bits, vbits, ch, vc, flag, big, small"
)
_STRUCT_COLS = "mood, amount, addr, ints, texts, matrix, js, jsb, r_int, r_ts, r_num, blob, note, moods"

BEFORE_KILL: tuple[Step, ...] = (
    _step(
        "primary-key updates",
        """
        BEGIN;
        UPDATE zoo."Order Items" SET "Item ID" = "Item ID" + 100000 WHERE "Item ID" <= 50;
        UPDATE zoo.text_key SET k = k || '~moved' WHERE k IN ('ß', 'ss', 'Ä', '', 'apple');
        UPDATE zoo.composite_key SET seq = seq + 1000 WHERE tenant IN ('ä', '') AND seq <= 10;
        UPDATE zoo.uuid_key SET id = md5('moved' || n)::uuid WHERE n <= 20;
        UPDATE zoo.nokey_unique SET code = code || '-renamed' WHERE n % 100 = 1;
        UPDATE zoo.ri_full SET id = id + 1000 WHERE id <= 5;
        COMMIT""",
    ),
    _step(
        "delete and re-insert",
        """
        BEGIN;
        DELETE FROM zoo."select" WHERE "from" <= 20;
        INSERT INTO zoo."select" SELECT i, 'again ' || i, NULL, 9 FROM generate_series(1, 20) i;
        COMMIT""",
        "DELETE FROM zoo.uuid_key WHERE n BETWEEN 100 AND 110",
        "INSERT INTO zoo.uuid_key SELECT md5(i::text)::uuid, i, 'reinserted'"
        " FROM generate_series(100, 110) i",
        """DELETE FROM zoo."größe_日本" WHERE "ключ" = 1""",
        """INSERT INTO zoo."größe_日本" VALUES (1, 'wieder da', 'ß')""",
    ),
    _step(
        "updates with unchanged TOAST values",
        "UPDATE zoo.toast_blobs SET counter = counter + 1",
        "UPDATE zoo.toast_blobs SET doc = doc || 'tail' WHERE id = 1",
        "UPDATE zoo.toast_blobs SET counter = counter + 1 WHERE id <= 5",
    ),
    _step(
        "savepoint rollback",
        """
        BEGIN;
        INSERT INTO zoo."MixedCase" VALUES (1001, 'kept', 'x', 1);
        SAVEPOINT s1;
        UPDATE zoo."MixedCase" SET "CamelCol" = 'rolled back' WHERE "Id" <= 100;
        DELETE FROM zoo."MixedCase" WHERE "Id" > 200;
        INSERT INTO zoo."MixedCase" VALUES (1002, 'rolled back', 'x', 2);
        ROLLBACK TO SAVEPOINT s1;
        SAVEPOINT s2;
        UPDATE zoo."MixedCase" SET "CamelCol" = 'kept too' WHERE "Id" = 2;
        RELEASE SAVEPOINT s2;
        COMMIT""",
    ),
    _step(
        "rolled-back transaction",
        """
        BEGIN;
        DELETE FROM zoo.uuid_key;
        INSERT INTO zoo.empty_table VALUES (1, 'never', NULL);
        UPDATE zoo.widen SET qty = -1;
        ROLLBACK""",
    ),
    _step(
        "truncate",
        'TRUNCATE zoo."v1.2.events"',
        """INSERT INTO zoo."v1.2.events" SELECT i, 'after truncate', NULL FROM generate_series(1, 50) i""",
    ),
    _step(
        "generated, defaults, identity and edge values",
        "UPDATE zoo.generated_cols SET qty = qty + 1 WHERE id <= 100",
        "INSERT INTO zoo.generated_cols (id, qty, price) VALUES (1001, 3, 2.5)",
        "INSERT INTO zoo.defaults (id) VALUES (1001)",
        "INSERT INTO zoo.defaults (id, status, priority) VALUES (1002, 'explicit', NULL)",
        "UPDATE zoo.scalars_edge SET n = 'NaN', f8 = '-Infinity', f4 = 'NaN', ts = '-infinity',"
        " d = 'infinity' WHERE id = 5",
        f"INSERT INTO zoo.scalars_edge SELECT id + 1000, {_SCALAR_COLS} FROM zoo.scalars_edge WHERE id < 10",
        f"INSERT INTO zoo.structured SELECT id + 1000, {_STRUCT_COLS} FROM zoo.structured WHERE id < 10",
        r"INSERT INTO zoo.text_key VALUES (E'new\nline', 1), ('\N-2', 2)",
        """INSERT INTO zoo."order-lines" ("order-id", note)"""
        " SELECT i, 'streamed' FROM generate_series(1, 30) i",
        f"""INSERT INTO zoo."{NAME_63}" VALUES (1001, 'streamed')""",
        "INSERT INTO zoo.identity_serial (note) VALUES ('streamed')",
        "UPDATE zoo.ri_full SET b = 'full ' || b WHERE id % 10 = 0",
        "DELETE FROM zoo.ri_full WHERE id > 290",
        "INSERT INTO zoo.empty_table VALUES (1, 'a', NULL), (2, 'b', 'infinity')",
        "DELETE FROM zoo.empty_table WHERE id = 1",
    ),
    _step(
        "a 100k-row transaction",
        f"INSERT INTO zoo.identity_serial (note) SELECT 'bulk ' || i FROM generate_series(1, {BULK_ROWS}) i",
    ),
)

AFTER_KILL: tuple[Step, ...] = (
    _step(
        "cross-partition moves",
        "UPDATE zoo.part_list SET region = 'us' WHERE region = 'de' AND id % 3 = 0",
        "UPDATE zoo.part_list SET region = 'xx' WHERE region = 'fr' AND id % 7 = 0",
        "UPDATE zoo.part_list SET region = 'de' WHERE region = 'jp' AND id % 11 = 0",
        "UPDATE zoo.part_range SET created = created + 365 WHERE id % 10 = 0",
        "INSERT INTO zoo.part_list VALUES ('de', 5001, 1), ('zz', 5002, 2)",
        "DELETE FROM zoo.part_range WHERE id % 17 = 0",
    ),
    _step(
        "ADD COLUMN with a default",
        "ALTER TABLE zoo.widen ADD COLUMN flag int DEFAULT 7",
        "ALTER TABLE zoo.generated_cols ADD COLUMN note text NOT NULL DEFAULT 'n/a'",
        "UPDATE zoo.widen SET price = price + 1 WHERE id <= 10",
        "INSERT INTO zoo.widen (id, qty, price, label, flag) VALUES (1001, 1, 1, 'new', 8)",
        "INSERT INTO zoo.widen (id, qty, price, label) VALUES (1002, 2, 2, 'dflt')",
        "UPDATE zoo.generated_cols SET qty = qty + 1 WHERE id = 1",
    ),
    _step(
        "safe widenings",
        "ALTER TABLE zoo.widen ALTER COLUMN qty TYPE bigint",
        "ALTER TABLE zoo.widen ALTER COLUMN label TYPE varchar(50)",
        "ALTER TABLE zoo.widen ALTER COLUMN price TYPE numeric(16,4)",
        "UPDATE zoo.widen SET qty = 5000000000, label = 'a label longer than ten' WHERE id <= 3",
        "UPDATE zoo.widen SET price = 123456789012.3456 WHERE id = 4",
        "INSERT INTO zoo.widen (id, qty) VALUES (1003, 9000000000)",
    ),
)
