"""Functions whose bodies read PHI, through ``phigate serve`` with psql, asyncpg and psycopg.

A database of its own (``fnlab``: 200 patients, and the hostile functions of
``tests/policies/functions_catalog.py``: SQL, SECURITY DEFINER, set-returning, plpgsql,
``BEGIN ATOMIC``, ``RETURN``, wrappers, a view, an operator, a cast, a column default, a
trigger). The gateway reads them from ``pg_proc`` at connect: an engineer (``phi: deny``) gets
no identifier through any of them, a clinician at most what ``max_rows``/``max_bytes`` allow,
and the functions that read no PHI keep working.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time

import asyncpg
import psycopg
import pytest

from gateway.demo.demo_data import grant_service_role_sql
from tests.conftest import ClusterInfo
from tests.e2e.harness import IDENTITIES, GatewayProcess

DB = "fnlab"
MRN = re.compile(r"MRN\d{7}")
LEAK = "SELECT string_agg(mrn, ',') FROM patients"
SETUP = f"""\
CREATE TABLE patients (id int PRIMARY KEY, mrn text NOT NULL);
INSERT INTO patients SELECT g, 'MRN' || lpad(g::text, 7, '0') FROM generate_series(1, 200) g;
CREATE TABLE departments (id int PRIMARY KEY, name text);
INSERT INTO departments VALUES (1, 'cardiology'), (2, 'oncology');
CREATE FUNCTION leak_sql() RETURNS text LANGUAGE sql STABLE AS $${LEAK}$$;
CREATE FUNCTION leak_definer() RETURNS text LANGUAGE sql STABLE SECURITY DEFINER
  AS $${LEAK}$$;
CREATE FUNCTION leak_setof() RETURNS SETOF patients LANGUAGE sql STABLE
  AS $$SELECT * FROM patients$$;
CREATE FUNCTION leak_plpgsql() RETURNS text LANGUAGE plpgsql STABLE
  AS $$BEGIN RETURN ({LEAK}); END$$;
CREATE FUNCTION leak_atomic() RETURNS text LANGUAGE sql STABLE BEGIN ATOMIC {LEAK}; END;
CREATE FUNCTION leak_return() RETURNS text LANGUAGE sql STABLE RETURN ({LEAK});
CREATE FUNCTION wrap_opaque() RETURNS text LANGUAGE sql STABLE AS $$SELECT leak_plpgsql()$$;
CREATE FUNCTION get_mrn(int) RETURNS text LANGUAGE sql STABLE
  AS $$SELECT mrn FROM patients WHERE id = $1$$;
CREATE FUNCTION dept_name(int) RETURNS text LANGUAGE sql STABLE
  AS $$SELECT name FROM departments WHERE id = $1$$;
CREATE FUNCTION initials(text) RETURNS text LANGUAGE sql IMMUTABLE
  AS $$SELECT upper(left($1, 1))$$;
CREATE FUNCTION op_leak(int, int) RETURNS text LANGUAGE sql STABLE AS $${LEAK}$$;
CREATE OPERATOR ### (LEFTARG = int, RIGHTARG = int, FUNCTION = op_leak);
CREATE TYPE boxed AS (v text);
CREATE FUNCTION to_boxed(int) RETURNS boxed LANGUAGE sql STABLE
  AS $$SELECT ROW(string_agg(mrn, ','))::boxed FROM patients$$;
CREATE CAST (int AS boxed) WITH FUNCTION to_boxed(int);
CREATE VIEW fn_view AS SELECT leak_sql() AS x;
CREATE TABLE noted (id int, body text DEFAULT leak_plpgsql());
CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql
  AS $$BEGIN NEW.x := ({LEAK}); RETURN NEW; END$$;
CREATE TABLE stamped (id int, x text);
CREATE TRIGGER stamp BEFORE INSERT ON stamped FOR EACH ROW EXECUTE FUNCTION stamp();
CREATE FUNCTION harmless() RETURNS text LANGUAGE sql STABLE AS $$SELECT 'ok'::text$$;
"""
POLICY = """\
phi_tables: [fnlab.public.patients]
rules:
  - name: clinicians-read-phi
    groups: [clinicians]
    allow: [select, transaction, session]
    max_rows: 50
    max_bytes: 600
  - name: engineers-no-phi
    groups: [engineers]
    allow: [select, insert, call, transaction, session]
    phi: deny
  - name: no-bulk-export
    groups: [clinicians, engineers]
    deny: [bulk_export]
  - name: builders
    users: [oncall]
    allow: [all]
"""
ATTACKS = [
    "SELECT leak_sql()",
    "SELECT leak_definer()",
    "SELECT * FROM leak_setof()",
    "SELECT leak_setof()",
    "SELECT leak_plpgsql()",
    "SELECT leak_atomic()",
    "SELECT leak_return()",
    "SELECT wrap_opaque()",
    "SELECT (SELECT leak_plpgsql())",
    "SELECT d.name FROM departments d WHERE leak_plpgsql() LIKE '%' || d.name || '%' "
    "OR leak_plpgsql() IS NOT NULL",
    "SELECT x FROM fn_view",
    "SELECT 1 ### 2",
    "SELECT (1::boxed).v",
    "INSERT INTO noted (id) VALUES (1) RETURNING body",
    "INSERT INTO stamped (id) VALUES (1) RETURNING x",
    f"DO $$BEGIN RAISE NOTICE '%', ({LEAK}); END$$",
    "PREPARE p AS SELECT leak_plpgsql(); EXECUTE p",
]


@pytest.fixture(scope="module")
def fnlab(pg_cluster: ClusterInfo, tmp_path_factory: pytest.TempPathFactory) -> GatewayProcess:
    cluster = pg_cluster.cluster
    cluster.create_database(DB)
    cluster.execute(SETUP + grant_service_role_sql(pg_cluster.service_user)
                    + f"ALTER FUNCTION harmless() OWNER TO {pg_cluster.service_user};",
                    dbname=DB)
    work = tmp_path_factory.mktemp("fnlab")
    policy = work / "functions.yaml"
    policy.write_text(POLICY)
    database = {"host": pg_cluster.host, "port": pg_cluster.port, "dbname": DB,
                "user": pg_cluster.service_user, "password_env": "CLINIC_DB_PASSWORD"}
    process = GatewayProcess(work, pg_cluster, {"policies": [str(policy)],
                                                "databases": {DB: database}}).start()
    yield process
    process.stop()


def _psql(gateway: GatewayProcess, sql: str, user: str) -> tuple[int, str]:
    """Real psql on the fnlab database: exit code, and stdout and stderr (notices) together."""
    result = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-d",
                             gateway.dsn(user, dbname=DB), "-c", sql],
                            capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout + result.stderr


def test_the_functions_really_leak(fnlab: GatewayProcess, pg_cluster: ClusterInfo) -> None:
    out = pg_cluster.cluster.execute("SELECT leak_plpgsql(); SELECT 1 ### 2", dbname=DB)
    assert len(set(MRN.findall(out))) == 200


@pytest.mark.parametrize("sql", ATTACKS)
def test_no_identifier_for_the_engineer_and_bounded_for_the_clinician(
        fnlab: GatewayProcess, sql: str) -> None:
    code, out = _psql(fnlab, sql, "bob")
    assert code != 0 and not MRN.findall(out), out
    assert "engineers-no-phi" in out or "no-bulk-export" in out, out
    code, out = _psql(fnlab, sql, "alice")
    assert len(set(MRN.findall(out))) <= 50, out


def test_clinician_cut_by_bytes_when_a_body_cannot_be_read(fnlab: GatewayProcess) -> None:
    code, out = _psql(fnlab, "SELECT leak_plpgsql()", "alice")
    assert code != 0 and "max_bytes" in out and not MRN.findall(out), out


def test_functions_without_phi_keep_working(fnlab: GatewayProcess) -> None:
    assert _psql(fnlab, "SELECT dept_name(1), initials(name) FROM departments "
                        "WHERE id = 1", "bob") == (0, "cardiology|C\n")
    code, out = _psql(fnlab, "SELECT get_mrn(7)", "alice")
    assert (code, out) == (0, "MRN0000007\n")
    # a scalar user function over PHI is no aggregate: one value per row, rows counted
    code, out = _psql(fnlab, "SELECT initials(mrn) FROM patients WHERE id <= 20", "alice")
    assert code == 0 and out.split() == ["M"] * 20, out
    assert _psql(fnlab, "INSERT INTO departments VALUES (3, 'x')", "bob")[0] == 0


def test_drivers_prepared_statements(fnlab: GatewayProcess) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(host="127.0.0.1", port=fnlab.port, user="bob",
                                     password=IDENTITIES["bob"].password, database=DB, ssl=False)
        try:
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError,
                               match="leak_plpgsql"):
                await conn.fetchval("SELECT leak_plpgsql()")
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                await conn.fetch("SELECT * FROM leak_setof() WHERE id > $1", 0)
            assert await conn.fetchval("SELECT dept_name($1)", 2) == "oncology"
        finally:
            await conn.close()
        conn = await asyncpg.connect(host="127.0.0.1", port=fnlab.port, user="alice",
                                     password=IDENTITIES["alice"].password, database=DB,
                                     ssl=False)
        try:
            with pytest.raises(asyncpg.exceptions.ProgramLimitExceededError):
                await conn.fetchval("SELECT wrap_opaque()")
            assert await conn.fetchval("SELECT get_mrn($1)", 3) == "MRN0000003"
        finally:
            await conn.close()

    asyncio.run(run())
    with psycopg.connect(fnlab.dsn("bob", dbname=DB)) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT leak_atomic()", prepare=True)
        conn.rollback()
        assert conn.execute("SELECT harmless()", prepare=True).fetchone() == ("ok",)


def test_a_function_replaced_through_the_gateway_is_read_again(fnlab: GatewayProcess) -> None:
    assert _psql(fnlab, "SELECT harmless()", "bob") == (0, "ok\n")
    replace = (f"CREATE OR REPLACE FUNCTION harmless() RETURNS text LANGUAGE sql STABLE "
               f"AS $${LEAK}$$")
    assert _psql(fnlab, replace, "oncall")[0] == 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # right after the DDL and once it is read again
        code, out = _psql(fnlab, "SELECT harmless()", "bob")
        assert code != 0 and not MRN.findall(out), out
        time.sleep(0.5)
    assert "harmless" in out and "engineers-no-phi" in out, out
