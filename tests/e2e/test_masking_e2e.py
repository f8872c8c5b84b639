"""Live masking end to end: psql, asyncpg (binary), psycopg and pg8000 through ``phigate serve``.

The fixture policy (tests/e2e/fixtures/masking.yaml) lets clinicians (alice) read PHI in clear
and engineers (bob) read it masked: ssn partial(last=4), email hashed, date of birth to its
year, the other identifiers redacted, detectors on every text value.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pg8000.native
import psycopg
import pytest

from tests.conftest import ClusterInfo
from tests.e2e.harness import FIXTURES, IDENTITIES, PHIGATE, REPO, GatewayProcess, psql
from tests.e2e.masking_corpus import CORPUS, REFUSED

POLICY = FIXTURES / "masking.yaml"
SSN_7 = "123-45-6789"
NOTE = "caller read out SSN 219-09-9999 and card 4111 1111 1111 1111, mail ann@example.org"


@pytest.fixture(scope="module")
def masked(pg_cluster: ClusterInfo, tmp_path_factory: pytest.TempPathFactory) -> GatewayProcess:
    pg_cluster.cluster.execute(
        "CREATE TABLE IF NOT EXISTS support_notes (id int PRIMARY KEY, body text);\n"
        "INSERT INTO support_notes VALUES (1, $$" + NOTE + "$$) ON CONFLICT DO NOTHING;\n"
        f"UPDATE patients SET ssn = '{SSN_7}', email = 'p7@example.org' WHERE id = 7;\n"
        "UPDATE patients SET email = 'p7@example.org' WHERE id = 8;\n"
        "CREATE OR REPLACE VIEW patient_contacts AS\n"
        "    SELECT id, ssn AS tax_id, email, lower(last_name) AS family FROM patients;\n"
        "CREATE OR REPLACE FUNCTION get_ssn(int) RETURNS text LANGUAGE sql STABLE\n"
        "    AS $$SELECT ssn FROM patients WHERE id = $1$$;\n"
        # an operator and a cast whose functions read the masked table (reversed: no detector
        # would recognise it), and an operator whose function is on the rule's allow-list
        "CREATE OR REPLACE FUNCTION ssn_of(int, int) RETURNS text LANGUAGE sql STABLE\n"
        "    AS $$SELECT reverse(ssn) FROM patients WHERE id = $1$$;\n"
        "DROP OPERATOR IF EXISTS ### (int, int);\n"
        "CREATE OPERATOR ### (LEFTARG = int, RIGHTARG = int, FUNCTION = ssn_of);\n"
        "DROP TYPE IF EXISTS ssn_box CASCADE;\n"
        "CREATE TYPE ssn_box AS (v text);\n"
        "CREATE FUNCTION box_ssn(int) RETURNS ssn_box LANGUAGE sql STABLE\n"
        "    AS $$SELECT ROW(reverse(ssn))::ssn_box FROM patients WHERE id = $1$$;\n"
        "CREATE CAST (int AS ssn_box) WITH FUNCTION box_ssn(int);\n"
        "CREATE OR REPLACE FUNCTION id_plus(int, int) RETURNS int LANGUAGE sql IMMUTABLE\n"
        "    AS $$SELECT $1 + $2$$;\n"
        "DROP OPERATOR IF EXISTS @+@ (int, int);\n"
        "CREATE OPERATOR @+@ (LEFTARG = int, RIGHTARG = int, FUNCTION = id_plus);\n"
        f"GRANT SELECT ON support_notes, patient_contacts TO {pg_cluster.service_user};\n",
        dbname=pg_cluster.database)
    process = GatewayProcess(tmp_path_factory.mktemp("masked"), pg_cluster,
                             {"policies": [str(POLICY)]}).start()
    yield process
    process.stop()


def rows(result: object) -> list[list[str]]:
    return [line.split("|") for line in str(result).strip().splitlines()]


def test_engineer_sees_masked_identifiers_with_psql(masked: GatewayProcess) -> None:
    result = psql(masked, "SELECT id, ssn, email, date_of_birth, first_name, city "
                  "FROM patients WHERE id = 7", user="bob")
    assert result.returncode == 0, result.stderr
    (row,) = rows(result.stdout)
    assert row[0] == "7" and row[1] == "***-**-6789"
    assert len(row[2]) == 16 and "@" not in row[2]
    assert row[3].endswith("-01-01") and row[4] == "****" and row[5] != "****"


def test_clinician_sees_clear_values(masked: GatewayProcess) -> None:
    result = psql(masked, "SELECT ssn, email FROM patients WHERE id = 7", user="alice")
    assert result.stdout.strip() == f"{SSN_7}|p7@example.org"


def test_aliases_casts_and_views_stay_masked(masked: GatewayProcess) -> None:
    result = psql(masked, "SELECT ssn AS x, (ssn)::text, t.ssn FROM patients t WHERE id = 7; "
                  "SELECT tax_id FROM patient_contacts WHERE id = 7", user="bob")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["***-**-6789|***-**-6789|***-**-6789", "***-**-6789"]


@pytest.mark.parametrize("sql", [
    "SELECT ssn || '' FROM patients WHERE id = 7",
    "SELECT coalesce(ssn, 'x') FROM patients WHERE id = 7",
    "SELECT row_to_json(p) FROM patients p WHERE id = 7",
    "SELECT jsonb_agg(p) FROM patients p WHERE id = 7",
    "SELECT family FROM patient_contacts WHERE id = 7",
    "SELECT ssn FROM patients WHERE id = 7 UNION SELECT 'x'",
])
def test_derived_columns_are_refused(masked: GatewayProcess, sql: str) -> None:
    result = psql(masked, sql, user="bob")
    assert result.returncode != 0
    assert "computed from masked columns" in result.stderr
    assert SSN_7 not in result.stdout


def test_function_off_the_allow_list_is_refused(masked: GatewayProcess) -> None:
    result = psql(masked, "SELECT get_ssn(7)", user="bob")
    assert result.returncode != 0 and "allow-list" in result.stderr
    assert SSN_7 not in result.stdout


@pytest.mark.parametrize(("sql", "what"), [
    ("SELECT 7 ### 0", "operator ### runs function public.ssn_of()"),
    ("SELECT id, 7 OPERATOR(public.###) 0 FROM patients WHERE id = 7",
     "operator ### runs function public.ssn_of()"),
    ("SELECT (7::ssn_box).v", "a cast to ssn_box runs function public.box_ssn()"),
    ("SELECT CAST(7 AS public.ssn_box)", "a cast to public.ssn_box runs function "
     "public.box_ssn()"),
])
def test_operators_and_casts_off_the_allow_list_are_refused(masked: GatewayProcess, sql: str,
                                                            what: str) -> None:
    result = psql(masked, sql, user="bob")
    assert result.returncode != 0
    assert f"{what}, which is not on the masked sessions' allow-list" in result.stderr
    assert SSN_7[::-1] not in result.stdout
    clear = psql(masked, sql, user="alice")  # the clinician's rule has no masking
    assert clear.returncode == 0 and SSN_7[::-1] in clear.stdout, clear.stderr


def test_operator_whose_function_is_allowed_runs(masked: GatewayProcess) -> None:
    result = psql(masked, "SELECT 3 @+@ 4, ssn FROM patients WHERE id = 7", user="bob")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "7|***-**-6789"


def test_detectors_catch_identifiers_in_free_text(masked: GatewayProcess) -> None:
    result = psql(masked, "SELECT body FROM support_notes WHERE id = 1", user="bob")
    assert result.returncode == 0, result.stderr
    assert "219-09-9999" not in result.stdout and "4111" not in result.stdout
    assert "[ssn]" in result.stdout and "[credit_card]" in result.stdout
    assert "[email]" in result.stdout
    clear = psql(masked, "SELECT body FROM support_notes WHERE id = 1", user="alice")
    assert clear.stdout.strip() == NOTE


def test_hashes_match_so_joins_and_group_by_work(masked: GatewayProcess) -> None:
    result = psql(masked, "SELECT email FROM patients WHERE id IN (7, 8) ORDER BY id",
                  user="bob")
    first, second = result.stdout.split()
    assert first == second


def test_copy_out_is_masked(masked: GatewayProcess, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    result = psql(masked, f"\\copy (SELECT id, ssn, email FROM patients WHERE id = 7) "
                  f"TO '{target}' CSV", user="bob")
    assert result.returncode == 0, result.stderr
    line = target.read_text().strip()
    assert line.startswith("7,***-**-6789,") and SSN_7 not in line
    binary = psql(masked, "COPY (SELECT ssn FROM patients WHERE id = 7) TO STDOUT "
                  "(FORMAT binary)", user="bob")
    assert binary.returncode != 0 and "binary COPY" in binary.stderr


def test_writes_reading_masked_tables_are_refused(masked: GatewayProcess) -> None:
    result = psql(masked, "UPDATE patients SET city = ssn WHERE id = 7", user="bob")
    assert result.returncode != 0 and "may not also write" in result.stderr


async def test_asyncpg_binary_results_are_masked(masked: GatewayProcess) -> None:
    conn = await asyncpg.connect(host="127.0.0.1", port=masked.port, user="bob",
                                 password=IDENTITIES["bob"].password, database="clinic",
                                 ssl=False)
    try:
        row = await conn.fetchrow("SELECT * FROM patients WHERE id = $1", 7)
        assert row["ssn"] == "***-**-6789" and row["first_name"] == "****"
        assert row["date_of_birth"].month == 1 and row["date_of_birth"].day == 1
        assert isinstance(row["date_of_birth"], dt.date)
        with pytest.raises(asyncpg.PostgresError, match="computed from masked"):
            await conn.fetchrow("SELECT ssn || '' AS s FROM patients WHERE id = $1", 7)
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


def test_a_repeated_statement_stays_masked(masked: GatewayProcess) -> None:
    """The policy fast path reuses a plain decision for a repeated text; a masked session's
    repeats (simple, extended, named prepared) are masked every time, and a clear session
    sending the same texts first does not make them clear for it."""
    notes = "SELECT body FROM support_notes WHERE id = 1"
    with psycopg.connect(masked.dsn("alice"), autocommit=True) as alice, \
            psycopg.connect(masked.dsn("bob"), autocommit=True) as bob:
        for _ in range(6):  # psycopg prepares a text by name from its 5th execution on
            assert alice.execute(notes).fetchone() == (NOTE,)
            assert alice.pgconn.exec_(notes.encode()).get_value(0, 0) == NOTE.encode()
        for _ in range(6):
            (body,) = bob.execute(notes).fetchone() or ("",)
            assert "219-09-9999" not in body and "[ssn]" in body
            simple = bob.pgconn.exec_(notes.encode()).get_value(0, 0) or b""
            assert b"219-09-9999" not in simple and b"[ssn]" in simple


def test_psycopg_and_pg8000_are_masked(masked: GatewayProcess) -> None:
    with psycopg.connect(masked.dsn("bob")) as conn:
        row = conn.execute("SELECT ssn, date_of_birth FROM patients WHERE id = %s",
                           (7,)).fetchone()
        assert row is not None and row[0] == "***-**-6789" and row[1].month == 1
        binary = conn.cursor(binary=True).execute(
            "SELECT ssn, id FROM patients WHERE id = %s", (7,)).fetchone()
        assert binary == ("***-**-6789", 7)
    conn8 = pg8000.native.Connection("bob", host="127.0.0.1", port=masked.port,
                                     database="clinic", password=IDENTITIES["bob"].password)
    try:
        assert conn8.run("SELECT ssn FROM patients WHERE id = :i", i=7) == [["***-**-6789"]]
    finally:
        conn8.close()


def test_journal_records_masked_columns(masked: GatewayProcess) -> None:
    psql(masked, "SELECT ssn FROM patients WHERE id = 7", user="bob")
    text = "\n".join(p.read_text(errors="replace")
                     for p in sorted(masked.journal_dir.rglob("*")) if p.is_file())
    entries = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    masking = [e for e in entries if "masking" in json.dumps(e)]
    assert masking, "no journal entry mentions masking"
    assert "partial(last=4)" in json.dumps(masking)


def _first_rows(conn: psycopg.Connection[tuple[object, ...]], sql: str
                ) -> list[tuple[object, ...]] | None:
    """Run a query string (simple protocol); the first result set that has rows."""
    cursor = psycopg.ClientCursor(conn)
    cursor.execute(sql.encode())
    while True:
        if cursor.description is not None:
            return cursor.fetchall()
        if not cursor.nextset():
            return None


def _check(code: str, got: object, clear: object) -> bool:
    text = None if got is None else str(got)
    if code == "C":
        return got == clear
    if code == "P":
        return text == "***-**-6789"
    if code == "H":
        return text is not None and len(text) == 16 and text != str(clear)
    if code == "Y":
        return text is not None and text.endswith("-01-01") and got != clear
    if code == "R":
        return text in (None, "****")
    return text is not None and "[" in text and got != clear  # S: scrubbed by a detector


@pytest.mark.parametrize(("sql", "expected"), CORPUS, ids=[c[0][:60] for c in CORPUS])
def test_corpus(corpus_connections: tuple[psycopg.Connection[tuple[object, ...]], ...],
                sql: str, expected: str) -> None:
    clinician, engineer = corpus_connections
    try:
        clear = _first_rows(clinician, sql)
    except psycopg.Error:
        clear = None
        clinician.execute("ROLLBACK")
    try:
        got = _first_rows(engineer, sql)
    except psycopg.Error as e:
        engineer.execute("ROLLBACK")
        assert expected == REFUSED, f"refused: {e}"
        assert "phigate" in str(e)
        return
    assert expected != REFUSED, f"not refused, got {got}"
    assert got is not None and len(got) >= 1
    clear_row = clear[0] if clear else (None,) * len(got[0])
    assert len(got[0]) == len(expected)
    for code, value, plain in zip(expected, got[0], clear_row, strict=True):
        assert _check(code, value, plain), f"{code}: got {value!r}, clear {plain!r}"


@pytest.fixture(scope="module")
def corpus_connections(masked: GatewayProcess
                       ) -> Iterator[tuple[psycopg.Connection[tuple[object, ...]], ...]]:
    with psycopg.connect(masked.dsn("alice"), autocommit=True) as clinician, \
            psycopg.connect(masked.dsn("bob"), autocommit=True) as engineer:
        yield clinician, engineer


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 80


def test_policy_check_and_test_show_masked_columns() -> None:
    policy = str(REPO / "examples" / "policies" / "clinic.yaml")
    check = subprocess.run(
        [str(PHIGATE), "policy", "check", "--policy", policy, "--user", "sam", "--groups",
         "support", "--database", "clinic", "SELECT ssn, ssn || '' AS s, city FROM patients "
         "WHERE id = 7"], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    assert "masked:    ssn partial(last=4), s refused, city clear" in check.stdout
    cases = subprocess.run(
        [str(PHIGATE), "policy", "test", "--policy", policy,
         str(REPO / "examples" / "policies" / "clinic.tests.yaml")],
        capture_output=True, text=True, check=False)
    assert cases.returncode == 0, cases.stdout


def test_policy_test_fails_a_wrong_masking_expectation(tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text("users: {sam: [support]}\ncases:\n  - user: sam\n    database: clinic\n"
                     "    sql: SELECT ssn FROM patients WHERE id = 7\n    expect: allow\n"
                     "    masked: {ssn: clear}\n")
    result = subprocess.run(
        [str(PHIGATE), "policy", "test", "--policy",
         str(REPO / "examples" / "policies" / "clinic.yaml"), str(cases)],
        capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "expected ssn clear, got partial(last=4)" in result.stdout


def test_sighup_reload_changes_masking(start_gateway: Callable[..., GatewayProcess],
                                       tmp_path: Path, masked: GatewayProcess) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.read_text())
    gateway = start_gateway({"policies": [str(policy)]})
    before = psql(gateway, "SELECT ssn FROM patients WHERE id = 7", user="bob")
    assert before.stdout.strip() == "***-**-6789"
    policy.write_text(POLICY.read_text().replace("ssn: partial(last=4)", "ssn: redact"))
    gateway.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        after = psql(gateway, "SELECT ssn FROM patients WHERE id = 7", user="bob")
        if after.stdout.strip() == "****":
            break
        time.sleep(0.1)
    assert after.stdout.strip() == "****"
