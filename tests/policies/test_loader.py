"""Policy loading: the example loads as written; every error names file:line: key."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from policies.loader import PolicyError, load_policies, load_policy
from policies.model import Policy
from tests.policies.conftest import EXAMPLES


def test_example_loads(clinic_policy: Policy) -> None:
    assert clinic_policy.phi_tables == (
        "clinic.public.patients", "clinic.public.encounters", "clinic.public.lab_*")
    names = [r.name for r in clinic_policy.rules]
    assert names == ["clinicians-read-phi", "engineers-no-phi", "support-engineers-read-masked",
                     "no-bulk-export", "no-schema-changes-in-business-hours",
                     "dba-reads-activity", "break-glass"]
    clinicians, engineers, support, bulk, ddl, dba, glass = clinic_policy.rules
    assert support.phi == "masked"
    assert [m.name for m in clinic_policy.masking] == ["engineers-see-masked"]
    assert clinicians.groups == {"clinicians"} and clinicians.databases == {"clinic"}
    assert clinicians.allow == {"select", "transaction", "session"}
    assert (clinicians.max_rows, clinicians.max_phi_rows_per_hour) == (500, 5000)
    assert clinicians.max_bytes is None and clinicians.max_phi_bytes_per_hour == 20 * 1024**2
    assert dba.users == {"dba"} and dba.max_bytes == 2 * 1024**2
    assert engineers.phi == "deny"
    assert bulk.deny == {"bulk_export"} and bulk.users is None and bulk.groups is None
    assert ddl.hours is not None and (ddl.hours.start, ddl.hours.end) == (420, 1140)
    assert ddl.days == {0, 1, 2, 3, 4} and ddl.timezone.key == "America/New_York"
    assert glass.users == {"oncall"} and glass.require_reason and glass.alert
    assert clinic_policy.enforce
    assert re.fullmatch(r"[0-9a-f]{64}", clinic_policy.sha256)
    assert clinicians.source.endswith("clinic.yaml:10")


RULE = "rules:\n  - name: r\n    allow: [select]\n"


@pytest.mark.parametrize(("text", "line", "key", "message"), [
    ("phi_tabels: []\nrules: []\n", 1, "phi_tabels", "did you mean 'phi_tables'"),
    ("phi_tables: []\n", 1, "rules", "missing"),
    ("- a\n- b\n", 1, None, "mapping"),
    (RULE + "    grups: [x]\n", 4, "rules[0].grups", "did you mean 'groups'"),
    (RULE.replace("[select]", "[select, selcet]"), 3, "rules[0].allow[1]",
     "unknown class 'selcet'"),
    (RULE.replace("allow: [select]", "deny: [everything]"), 3, "rules[0].deny[0]",
     "unknown class"),
    (RULE.replace("allow: [select]", "allow: [bulk_export]"), 3, "rules[0].allow[0]",
     "can only be denied"),
    (RULE + "    clients: [10.0.0.0/33]\n", 4, "rules[0].clients[0]", "bad CIDR"),
    (RULE + "    clients:\n      - 10.0.0.0/8\n      - 10.0.0.1/8\n", 6, "rules[0].clients[1]",
     "bad CIDR"),
    (RULE + "    clients: [example.com]\n", 4, "rules[0].clients[0]", "bad CIDR"),
    (RULE + "    hours: '7-19'\n", 4, "rules[0].hours", "bad time window"),
    (RULE + "    hours: '07:00-25:00'\n", 4, "rules[0].hours", "bad time window"),
    (RULE + "    hours: '07:60-19:00'\n", 4, "rules[0].hours", "bad time window"),
    (RULE + "    hours: '09:00-09:00'\n", 4, "rules[0].hours", "same"),
    (RULE + "    hours: 0700\n", 4, "rules[0].hours", "non-empty string"),
    (RULE + "    timezone: Mars/Olympus_Mons\n", 4, "rules[0].timezone", "unknown time zone"),
    (RULE + "    timezone: ../../etc/passwd\n", 4, "rules[0].timezone", "unknown time zone"),
    (RULE + "    days: [mon, tues]\n", 4, "rules[0].days[1]", "bad day name"),
    (RULE + "    days: mon\n", 4, "rules[0].days", "expected a list"),
    (RULE + "    phi: no\n", 4, "rules[0].phi", "expected allow, deny or masked"),
    (RULE + "    max_rows: 0\n", 4, "rules[0].max_rows", "positive integer"),
    (RULE + "    max_rows: true\n", 4, "rules[0].max_rows", "positive integer"),
    (RULE + "    max_phi_rows_per_hour: '5000'\n", 4, "rules[0].max_phi_rows_per_hour",
     "positive integer"),
    (RULE + "    alert: yes please\n", 4, "rules[0].alert", "true or false"),
    (RULE + "    users: []\n", 4, "rules[0].users", "empty list"),
    (RULE + "    groups: [ok, '']\n", 4, "rules[0].groups[1]", "non-empty string"),
    (RULE + "  - name: r\n    deny: [ddl]\n", 4, "rules[1].name", "duplicate rule name"),
    (RULE + "    name: again\n", 4, None, "duplicate key 'name'"),
    ("rules:\n  - allow: [select]\n", 2, "rules[0].name", "needs a name"),
    ("rules:\n  - name: 'bad name!'\n    allow: [select]\n", 2, "rules[0].name", "use letters"),
    ("rules:\n  - name: r\n", 2, "rules[0]", "allows and denies nothing"),
    ("rules:\n  - name: r\n    deny: [ddl]\n    require_reason: true\n", 4,
     "rules[0].require_reason", "only has an effect"),
    ("rules:\n  - name: r\n    deny: [ddl]\n    max_rows: 5\n", 4, "rules[0].max_rows",
     "only has an effect"),
    (RULE.replace("allow: [select]", "allow: [select]\n    deny: [select]"), 4, "rules[0].deny",
     "both allowed and denied"),
    ("phi_tables: [public.patients]\n" + RULE, 1, "phi_tables[0]", "database.schema.table"),
    ("phi_tables:\n  - clinic.public.\"x\n" + RULE, 2, "phi_tables[0]", "unbalanced"),
    ("enforce: maybe\n" + RULE, 1, "enforce", "true or false"),
    ("rules: {name: r}\n", 1, "rules", "list of rules"),
    ("rules:\n  - [select]\n", 2, "rules[0]", "expected a mapping"),
    ("rules:\n  - name: r\n    allow: [select\n", 4, None, "invalid YAML"),
    ("rules:\n  - name: !!python/object:os.system r\n    allow: [select]\n", 2, None,
     "invalid YAML"),
])
def test_errors_name_file_line_and_key(text: str, line: int, key: str | None,
                                       message: str) -> None:
    with pytest.raises(PolicyError) as raised:
        load_policy(text, "policies/x.yaml")
    error = raised.value
    assert (error.source, error.line, error.key) == ("policies/x.yaml", line, key)
    assert message in error.message
    prefix = f"policies/x.yaml:{line}:" + (f" {key}:" if key else "")
    assert str(error).startswith(prefix)


def test_duplicate_rule_names_across_files() -> None:
    with pytest.raises(PolicyError) as raised:
        load_policies([(RULE, "a.yaml"), ("\n" + RULE, "b.yaml")])
    assert str(raised.value).startswith("b.yaml:3: name: rule name 'r' already used at a.yaml:2")


def test_optional_keys_and_defaults() -> None:
    policy = load_policy(
        "description: test\nversion: 1\nenforce: false\nrules:\n"
        "  - name: r\n    description: why\n    allow: [all]\n    days: [Saturday, sun]\n"
        "    hours: '22:00-24:00'\n    clients: ['::1', 192.168.0.0/16]\n", "y.yaml")
    (rule,) = policy.rules
    assert not policy.enforce and rule.days == {5, 6} and rule.timezone.key == "UTC"
    assert rule.hours is not None and rule.hours.contains(23 * 60) and not rule.hours.contains(0)
    assert rule.description == "why" and rule.clients is not None and len(rule.clients) == 2


def test_empty_rules_list_denies_everything() -> None:
    from policies.context import RequestContext
    from policies.engine import Engine

    engine = Engine([load_policy("rules: []\n", "empty.yaml")])
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert not engine.decide(RequestContext("a", "d", now), "SELECT 1").allowed


def test_example_file_is_the_issue_text() -> None:
    text = Path(EXAMPLES / "clinic.yaml").read_text(encoding="utf-8")
    assert text.startswith("# policies/clinic.yaml\nphi_tables:")
    assert "phi: deny                # may not touch PHI tables at all" in text
