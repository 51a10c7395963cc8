"""Every CDC session prints and parses ``money`` under lc_monetary = C, whatever the source or
target database sets (inbox T4-1: the walsender printed under the source's locale, the target
parsed under its own). This machine has only C locales, so a differing *format* cannot be shown;
what is asserted is the setting each session really runs with, against databases that set another
one, and a text-mode stream of money values that ends exact."""

from __future__ import annotations

import psycopg
import pytest

from tests.integration.worker_cdc.helpers import InProcessWorker, make_spec, wait_equal
from zdtp_worker.incremental import binary_mode
from zdtp_worker.incremental.refetch import SourceRows
from zdtp_worker.incremental.replication import replication_connect
from zdtp_worker.incremental.target import Target

pytestmark = pytest.mark.postgres

OTHER = "C.utf8"  # a locale every server here has, other than C


def _set_database_lc_monetary(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE \"{conn.info.dbname}\" SET lc_monetary = '{OTHER}'")
    with psycopg.connect(dsn) as conn:  # a plain new session gets it: the test can tell
        assert conn.execute("SHOW lc_monetary").fetchone() == (OTHER,)


def test_replication_target_and_refetch_sessions_pin_lc_monetary(source_dsn: str, target_dsn: str) -> None:
    _set_database_lc_monetary(source_dsn)
    _set_database_lc_monetary(target_dsn)
    repl = replication_connect(source_dsn)
    try:
        cur = repl.cursor()
        cur.execute("SHOW lc_monetary")
        assert cur.fetchone() == ("C",)
    finally:
        repl.close()
    target = Target(target_dsn, stream="text-form")
    target.connect()
    try:
        assert target.conn.execute("SHOW lc_monetary").fetchone() == ("C",)
        target.rollback()  # the pin was committed: a rolled-back batch keeps it
        assert target.conn.execute("SHOW lc_monetary").fetchone() == ("C",)
    finally:
        target.close()
    rows = SourceRows(source_dsn)
    try:
        assert rows._session().execute("SHOW lc_monetary").fetchone() == ("C",)
    finally:
        rows.close()


def test_money_streams_exact_in_text_mode(
    source_dsn: str, target_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(binary_mode, "ALLOWED", False)  # binary mode would send money as int64
    _set_database_lc_monetary(source_dsn)
    _set_database_lc_monetary(target_dsn)
    with psycopg.connect(source_dsn, autocommit=True) as src:
        src.execute("CREATE TABLE m (id int PRIMARY KEY, a money)")
    worker = InProcessWorker(make_spec(["m"]), source_dsn, target_dsn).start().wait_streaming()
    try:
        with psycopg.connect(source_dsn, autocommit=True) as src:
            src.execute(
                "INSERT INTO m VALUES (1, 1234.56), (2, -1234567.89), (3, 0.01), (4, NULL),"
                " (5, '92233720368547758.07')"
            )
            src.execute("UPDATE m SET a = a * 2 WHERE id = 3")
        wait_equal(source_dsn, target_dsn, ["m"], columns="id, a::numeric", worker=worker)
    finally:
        worker.stop()
