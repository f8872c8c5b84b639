"""A filtered copy of PHI into a table that is not a PHI table, through a real gateway.

Break-glass (``oncall`` with a reason, example clinic policy) may write and read PHI, yet
``INSERT INTO leak SELECT mrn FROM patients WHERE id < 400`` returns no rows, so no row limit
or budget would count it, and ``leak`` would read as no PHI afterwards. It is refused as a
bulk export (42501), journaled as one, and nothing reaches the table (checked on the database
directly); a copy from a table that is not PHI still runs.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.conftest import ClusterInfo
from tests.e2e.harness import CLINIC_POLICY, PHIGATE, REPO, GatewayProcess

LEAK = "public.copies_leak"
COPY = f"INSERT INTO {LEAK} SELECT mrn FROM patients WHERE id < 400"
REASON = "-c phigate.reason=INC-1"


@pytest.fixture()
def leak(pg_cluster: ClusterInfo) -> Iterator[str]:
    """A table that is not a PHI table, made directly on the database, writable by the
    service role."""
    pg_cluster.cluster.execute(
        f"DROP TABLE IF EXISTS {LEAK}; CREATE TABLE {LEAK} (v text);\n"
        f"GRANT ALL ON {LEAK} TO {pg_cluster.service_user};\n", dbname=pg_cluster.database)
    yield LEAK
    pg_cluster.cluster.execute(f"DROP TABLE IF EXISTS {LEAK}", dbname=pg_cluster.database)


def _rows_on_the_database(pg_cluster: ClusterInfo) -> int:
    out = pg_cluster.cluster.execute(f"SELECT count(*) FROM {LEAK}", dbname=pg_cluster.database)
    return int(out.strip())


def _journal(gateway: GatewayProcess, sql: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        shown = subprocess.run([str(PHIGATE), "journal", "show", str(gateway.journal_dir),
                                "--json"], cwd=REPO, capture_output=True, text=True, timeout=30)
        hits = [e for e in map(json.loads, shown.stdout.splitlines()) if e.get("sql") == sql]
        if hits or time.monotonic() > deadline:
            return hits
        time.sleep(0.1)


def test_a_filtered_copy_into_a_table_that_is_not_phi_is_refused(
        start_gateway: Callable[..., GatewayProcess], pg_cluster: ClusterInfo,
        leak: str) -> None:
    gateway = start_gateway({"policies": [str(CLINIC_POLICY)]})
    with psycopg.connect(gateway.dsn("oncall"), autocommit=True, options=REASON) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            conn.execute(COPY)
        message = refused.value.diag.message_primary or ""
        assert refused.value.sqlstate == "42501"
        assert message.startswith("phigate: rule no-bulk-export")
        assert f"copy into {leak}, which is not a PHI table (insert)" in message
        # the same rows through a CTE, and as a new table, fare no better
        for sql in (f"WITH x AS (SELECT mrn FROM patients WHERE id < 400) "
                    f"INSERT INTO {leak} SELECT * FROM x",
                    "CREATE TABLE public.copies_leak2 AS SELECT mrn FROM patients WHERE id < 9"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
        # the session goes on; a copy from a table that is not PHI runs
        conn.execute(f"INSERT INTO {leak} SELECT name FROM departments WHERE code <> ''")
        copied = conn.execute(f"SELECT count(*) FROM {leak}").fetchone()
    assert copied is not None and copied[0] == _rows_on_the_database(pg_cluster) > 0
    pg_cluster.cluster.execute(f"TRUNCATE {LEAK}", dbname=pg_cluster.database)
    assert _rows_on_the_database(pg_cluster) == 0
    exists = pg_cluster.cluster.execute("SELECT to_regclass('public.copies_leak2') IS NULL",
                                        dbname=pg_cluster.database)
    assert exists.strip() == "t"
    entries = _journal(gateway, COPY)
    assert entries and all(e.get("bulk_export") for e in entries), entries
    assert any(f"copy into {leak}, which is not a PHI table (insert)" in e.get("export_via", [])
               for e in entries), entries
