"""Every route of ``phigate console`` over HTTP, against a journal real traffic made.

The console is the installed console script (``conftest.deployment``); the journal is the
running gateway's, so each view of PHI is journaled through its spool and read back with
``phigate journal show``. Negative tests: no session, forged cookie, wrong password, a
non-auditor with the right password, CSRF token missing or wrong, rate limits, an
unwritable spool (the page refuses), an open redirect through ``next``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.journal import segments
from tests.console.conftest import AUDITORS, LOOKUPS, Deployment, wait_until
from tests.console.harness import Answer, Client
from tests.e2e.harness import IDENTITIES

ROW = re.compile(r'<tr class="(allow|deny|cut)">')


@pytest.fixture(scope="module")
def carol(deployment: Deployment) -> Client:
    client = Client(deployment.console)
    answer = client.login("carol", AUDITORS["carol"])
    assert answer.status == 303, answer.text
    return client


def rows(answer: Answer) -> list[str]:
    """The activity table's rows, as their HTML."""
    assert answer.status == 200, answer.text
    body = answer.text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [part for part in re.split(r"(?=<tr class=)", body) if ROW.match(part)]


def accesses(deployment: Deployment) -> list[dict[str, Any]]:
    """The console's audit_access entries (``journal show`` of a live journal adds its own)."""
    return [a for a in deployment.entries("audit_access") if a["action"].startswith("console ")]


def statements(deployment: Deployment, **match: Any) -> list[dict[str, Any]]:
    return [e for e in deployment.entries("statement")
            if all(e.get(k) == v for k, v in match.items())]


# ---------------------------------------------------------------- without a session


@pytest.mark.parametrize("path", [
    "/", "/dashboard", "/activity", "/activity?identity=alice&q=mrn", "/activity/export",
    "/sessions", "/sessions/0123456789abcdef", "/sessions/0123456789abcdef/events",
    "/people", "/people/alice", "/alerts", "/integrity", "/integrity/progress", "/nowhere"])
def test_every_page_redirects_to_login_without_a_session(deployment: Deployment,
                                                         path: str) -> None:
    client = Client(deployment.console)
    answer = client.get(path)
    assert answer.status == 303 and answer.location == "/login"
    assert b"SELECT" not in answer.body
    client.cookies["phigate_console"] = "forged-" + "A" * 40
    assert client.get(path).location == "/login"


def test_posts_without_a_session_redirect_to_login(deployment: Deployment) -> None:
    for path in ("/integrity/verify", "/logout"):
        answer = Client(deployment.console).post(path, {"csrf_token": "x"})
        assert answer.status == 303 and answer.location == "/login"


# ---------------------------------------------------------------- login


def test_login_form_has_the_contract_fields(deployment: Deployment) -> None:
    answer = Client(deployment.console).get("/login")
    assert answer.status == 200
    for name in ("username", "password", "csrf_token"):
        assert f'name="{name}"' in answer.text
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in answer.headers  # no TLS configured here


def test_login_sets_a_hardened_session_cookie_and_is_journaled(deployment: Deployment) -> None:
    client = Client(deployment.console)
    answer = client.login("dana", AUDITORS["dana"])
    assert answer.status == 303 and answer.location == "/dashboard"
    cookie = next(c for c in answer.set_cookies if c.startswith("phigate_console="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback; the TLS test checks Secure
    login = [a for a in accesses(deployment) if a["action"] == "console login"]
    assert login and login[-1]["as"] == "dana" and login[-1]["via"] == "spool"
    assert client.get("/dashboard").status == 200


def test_login_follows_only_local_next(deployment: Deployment) -> None:
    client = Client(deployment.console)
    token = client.get("/login").csrf()
    answer = client.post("/login", {"username": "dana", "password": AUDITORS["dana"],
                                    "csrf_token": token, "next": "/people"})
    assert answer.location == "/people"
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        client = Client(deployment.console)
        token = client.get("/login").csrf()
        answer = client.post("/login", {"username": "dana", "password": AUDITORS["dana"],
                                        "csrf_token": token, "next": target})
        assert answer.status == 303 and answer.location == "/dashboard"


@pytest.mark.parametrize("username, password", [
    ("carol", "not-carols-password"),
    ("alice", IDENTITIES["alice"].password),  # right password, but not an auditor
    ("nobody", "whatever"),
    ("carol", ""),
])
def test_wrong_logins_are_refused(deployment: Deployment, username: str,
                                  password: str) -> None:
    client = Client(deployment.console)
    answer = client.login(username, password)
    assert answer.status == 401 and "Wrong name or password" in answer.text
    assert "phigate_console" not in client.cookies
    assert client.get("/activity").location == "/login"


def test_login_without_or_with_a_wrong_csrf_token_is_refused(deployment: Deployment) -> None:
    client = Client(deployment.console)
    good = client.get("/login").csrf()
    form = {"username": "carol", "password": AUDITORS["carol"]}
    assert client.post("/login", form).status == 403
    assert client.post("/login", {**form, "csrf_token": good[:-4] + "0000"}).status == 403
    other = Client(deployment.console)  # another browser's token does not fit this cookie
    assert client.post("/login", {**form, "csrf_token": other.get("/login").csrf()}
                       ).status == 403
    fresh = Client(deployment.console)  # the token without its cookie
    assert fresh.post("/login", {**form, "csrf_token": good}).status == 403
    assert "phigate_console" not in client.cookies


def test_logins_are_rate_limited(deployment: Deployment) -> None:
    limit = 10  # limits.auth_max_failures (the gateway's default)
    client = Client(deployment.console)
    for _ in range(limit):
        assert client.login("erin", "guess").status == 401
    answer = client.login("erin", AUDITORS["erin"])  # even the right password now
    assert answer.status == 429 and "phigate_console" not in client.cookies
    assert Client(deployment.console).login("dana", AUDITORS["dana"]).status == 303


def test_logout_ends_the_session(deployment: Deployment) -> None:
    client = Client(deployment.console)
    client.login("dana", AUDITORS["dana"])
    page = client.get("/people")
    stolen = client.cookies["phigate_console"]
    assert client.post("/logout", {"csrf_token": page.csrf()}).location == "/login"
    thief = Client(deployment.console)
    thief.cookies["phigate_console"] = stolen
    assert thief.get("/people").location == "/login"


# ---------------------------------------------------------------- CSRF on every POST


def test_posts_need_the_sessions_csrf_token(deployment: Deployment, carol: Client) -> None:
    token = carol.get("/integrity").csrf()
    assert carol.post("/integrity/verify").status == 403
    assert carol.post("/integrity/verify", {"csrf_token": "0" * len(token)}).status == 403
    assert carol.post("/integrity/verify", headers={"X-CSRF-Token": "nope"}).status == 403
    other = Client(deployment.console)
    other.login("dana", AUDITORS["dana"])
    assert carol.post("/integrity/verify", {"csrf_token": other.get("/people").csrf()}
                      ).status == 403
    assert carol.post("/logout").status == 403  # still logged in afterwards
    assert carol.get("/people").status == 200
    assert carol.post("/integrity/verify", {"csrf_token": token}).location == "/integrity"


# ---------------------------------------------------------------- activity


def test_identity_filter(deployment: Deployment, carol: Client) -> None:
    alice = statements(deployment, identity="alice")
    answer = carol.get("/activity?identity=alice")
    assert f"<strong>{len(alice)}</strong> statements" in answer.text
    shown = rows(answer)
    assert len(shown) == 50 and all('href="/people/alice"' in r for r in shown)
    bob = rows(carol.get("/activity?identity=bob"))
    assert len(bob) == len(statements(deployment, identity="bob")) == 2
    assert all("alice" not in r for r in bob)


def test_table_filter(deployment: Deployment, carol: Client) -> None:
    shown = rows(carol.get("/activity?table=encounters"))
    assert len(shown) == 1 and "count(*) AS visits FROM encounters" in shown[0]
    assert 'class="tbl phi">encounters' in shown[0]  # a PHI table, marked so
    page = carol.get("/activity").text
    names = re.findall(r'<option value="([^"]+)">', page.split('id="table-names"')[1])
    assert names == ["patients", "encounters"]  # PHI tables first, the most used first


def test_decision_filter(deployment: Deployment, carol: Client) -> None:
    denied = rows(carol.get("/activity?decision=deny"))
    assert len(denied) == 2 and all(r.startswith('<tr class="deny">') for r in denied)
    assert any("DELETE FROM patients WHERE id = 1" in r for r in denied)
    assert any("SELECT last_name FROM patients LIMIT 1" in r for r in denied)
    one = rows(carol.get("/activity?identity=bob&decision=deny"))
    assert len(one) == 1 and "engineers-no-phi" in one[0]
    assert len(rows(carol.get("/activity?decision=allow&identity=bob"))) == 1
    assert carol.get("/activity?decision=maybe").status == 400


def test_text_filter(deployment: Deployment, carol: Client) -> None:
    shown = rows(carol.get("/activity?q=alice+was+here"))
    assert len(shown) == 1 and "alice was here" in shown[0]
    assert rows(carol.get("/activity?q=visits&identity=alice"))
    assert not rows(carol.get("/activity?q=visits&identity=bob"))
    for hostile in ('"', "NEAR(a b)", "sql:*", "a OR b", "'; DROP TABLE x; --"):
        answer = carol.get("/activity?" + urllib.parse.urlencode({"q": hostile}))
        assert answer.status == 200  # searched for, not obeyed


def test_group_database_and_phi_filters(deployment: Deployment, carol: Client) -> None:
    clinicians = carol.get("/activity?group=clinicians")
    assert f"<strong>{len(statements(deployment, identity='alice'))}</strong>" in clinicians.text
    assert len(rows(carol.get("/activity?group=engineers"))) == 2
    assert rows(carol.get("/activity?database=clinic"))
    assert not rows(carol.get("/activity?database=elsewhere"))
    phi = rows(carol.get("/activity?phi=1&identity=bob"))
    assert len(phi) == 1 and "patients" in phi[0]


def test_time_filter(deployment: Deployment, carol: Client) -> None:
    assert rows(carol.get("/activity?since=2000-01-01T00:00"))
    assert not rows(carol.get("/activity?until=2000-01-01T00:00"))
    assert carol.get("/activity?since=yesterday-ish").status == 400


def test_pagination(deployment: Deployment, carol: Client) -> None:
    first = carol.get("/activity?identity=alice&q=patients")
    total = LOOKUPS + 2  # the lookups, the first SELECT, the refused DELETE
    assert f"<strong>{total}</strong> statements" in first.text
    assert 'rel="next" href="/activity?identity=alice&amp;q=patients&amp;page=2"' in first.text
    second = carol.get("/activity?identity=alice&q=patients&page=2")
    assert 'rel="prev"' in second.text and 'rel="next"' not in second.text
    page_one, page_two = rows(first), rows(second)
    assert len(page_one) == 50 and len(page_two) == total - 50
    assert not set(page_one) & set(page_two)
    assert f"WHERE id = {LOOKUPS};" in page_one[0]  # newest first
    oldest = rows(carol.get("/activity?identity=alice&q=patients&sort=oldest"))
    assert "ORDER BY id LIMIT 3" in oldest[0]
    assert carol.get("/activity?page=x").status == 400


# ---------------------------------------------------------------- sessions


def test_session_page(deployment: Deployment, carol: Client) -> None:
    answer = carol.get(f"/sessions/{deployment.alice_session}")
    assert answer.status == 200
    text = answer.text
    assert 'href="/people/alice"' in text and "127.0.0.1:" in text and "psql" in text
    for sql in ("SELECT id, mrn, last_name FROM patients ORDER BY id LIMIT 3;",
                "DELETE FROM patients WHERE id = 1;", "SELECT &#39;alice was here&#39; AS note;"):
        assert sql in text
    assert "clinicians-read-phi" in text and '<tr class="deny">' in text
    assert "<dd>5 (1 denied)</dd>" in text, text
    assert 'id="player"' in text  # recorded, so the page carries the player
    assert carol.get("/sessions/ffffffffffffffff").status == 404


def test_session_events_need_the_journaled_session_view(deployment: Deployment) -> None:
    client = Client(deployment.console)
    client.login("dana", AUDITORS["dana"])
    events = f"/sessions/{deployment.alice_session}/events"
    assert client.get(events).status == 403  # the session page was not viewed yet
    assert client.get(f"/sessions/{deployment.alice_session}").status == 200
    answer = client.get(events)
    assert answer.status == 200
    data = json.loads(answer.body)
    kinds = [e["type"] for e in data["events"]]
    assert kinds[0] == "session" and kinds[-1] == "end" and data["complete"]
    sql = [e["sql"] for e in data["events"] if e["type"] == "statement"]
    assert sql[0].startswith("SELECT id, mrn, last_name") and len(sql) == 5
    first = next(e for e in data["events"] if e["type"] == "result")
    assert first["rows"] == 3 and first["columns"][1]["name"] == "mrn"
    assert data["check"]["ok"]
    times = [e["t"] for e in data["events"]]
    assert times == sorted(times) and times[-1] - times[0] >= 1.0  # the pg_sleep
    rest = json.loads(client.get(f"{events}?from={len(kinds) - 1}").body)
    assert [e["type"] for e in rest["events"]] == ["end"]


def test_sessions_list_and_dashboard(deployment: Deployment, carol: Client) -> None:
    listed = carol.get("/sessions").text
    assert deployment.alice_session in listed and deployment.bob_session in listed
    assert "bob" in carol.get("/sessions?identity=bob").text
    dashboard = carol.get("/dashboard").text
    assert dashboard.count("<svg") >= 4 and "encounters" in dashboard


def test_people_and_their_budgets(deployment: Deployment, carol: Client) -> None:
    people = carol.get("/people").text
    assert 'href="/people/alice"' in people and 'href="/people/bob"' in people
    assert "5,000" in people  # alice's max_phi_rows_per_hour (clinicians-read-phi)
    alice = carol.get("/people/alice").text
    assert 'id="budget-clinicians-read-phi"' in alice and "5,000 PHI rows per hour" in alice
    assert "20,971,520 PHI bytes per hour" in alice  # max_phi_bytes_per_hour: 20MiB
    assert "budget 5,000/h" in alice  # the chart's dashed line
    bob = carol.get("/people/bob").text
    assert "SELECT last_name FROM patients LIMIT 1" in bob  # bob's denial
    assert "sets an hourly PHI budget" in bob  # engineers have none


def test_alerts_with_their_triggering_statements(deployment: Deployment,
                                                 carol: Client) -> None:
    alerts = deployment.entries("alert")
    assert {a["identity"] for a in alerts if a["rule"] == "denials"} == {"alice", "bob"}
    page = carol.get("/alerts").text
    assert page.count('<span class="pill deny">denials</span>') == len(alerts)
    assert "DELETE FROM patients WHERE id = 1;" in page
    assert "SELECT last_name FROM patients LIMIT 1" in page
    assert f'href="/sessions/{deployment.alice_session}"' in page


# ---------------------------------------------------------------- export


def test_csv_and_jsonl_export(deployment: Deployment, carol: Client) -> None:
    answer = carol.get("/activity/export?identity=alice&format=csv")
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in answer.headers["Content-Disposition"]
    table = list(csv.DictReader(io.StringIO(answer.text)))
    alice = statements(deployment, identity="alice")
    assert len(table) == len(alice)  # every match, not one page
    assert {int(r["seq"]) for r in table} == {e["seq"] for e in alice}
    delete = next(r for r in table if r["sql"].startswith("DELETE"))
    assert delete["verdict"] == "deny" and delete["identity"] == "alice"
    lines = carol.get("/activity/export?decision=deny&format=jsonl").text.splitlines()
    assert sorted(json.loads(line)["identity"] for line in lines) == ["alice", "bob"]
    assert carol.get("/activity/export?format=xlsx").status == 400
    exports = [a for a in accesses(deployment) if a["action"] == "console export"]
    assert exports[-1]["filters"] == {"decision": "deny", "format": "jsonl", "page": "1"}
    assert exports[-2]["filters"]["identity"] == "alice"


# ---------------------------------------------------------------- audit_access


@pytest.mark.parametrize("path, action, filters", [
    ("/activity?identity=alice&table=patients&decision=deny&q=DELETE", "console activity",
     {"identity": "alice", "table": "patients", "decision": "deny", "q": "DELETE",
      "page": "1"}),
    ("/sessions/{alice}", "console session", None),
    ("/sessions", "console sessions", None),
    ("/people", "console people", None),
    ("/people/bob", "console person", {"identity": "bob"}),
    ("/alerts", "console alerts", None),
    ("/dashboard", "console dashboard", None),
])
def test_each_view_of_phi_is_journaled_first(deployment: Deployment, path: str, action: str,
                                             filters: dict[str, str] | None) -> None:
    client = Client(deployment.console)
    client.login("dana", AUDITORS["dana"])
    before = len(accesses(deployment))
    path = path.format(alice=deployment.alice_session)
    assert client.get(path).status == 200
    # The spool hand-over is acknowledged before the page is sent: no waiting needed here.
    new = accesses(deployment)[before:]
    assert [a["action"] for a in new] == [action]
    entry = new[0]
    assert entry["as"] == "dana" and entry["via"] == "spool" and entry["os_user"]
    assert entry.get("filters") == filters
    if action == "console session":
        assert entry["session"] == deployment.alice_session


@pytest.fixture
def unwritable_spool(deployment: Deployment) -> Iterator[None]:
    spool = deployment.gateway.journal_dir / "spool"
    if not segments.set_immutable(spool, True):
        pytest.fail("cannot chattr +i the spool directory (needs root on ext4/xfs)")
    try:
        yield
    finally:
        segments.set_immutable(spool, False)


@pytest.mark.parametrize("path", ["/activity?q=alice+was+here", "/sessions/{alice}",
                                  "/activity/export?q=alice+was+here&format=csv", "/people"])
def test_a_view_that_cannot_be_journaled_is_refused(deployment: Deployment, carol: Client,
                                                    unwritable_spool: None, path: str) -> None:
    answer = carol.get(path.format(alice=deployment.alice_session))
    assert answer.status == 503 and "Not shown" in answer.text
    assert "alice was here" not in answer.text and "mrn" not in answer.text


def test_views_work_again_once_the_spool_is_writable(deployment: Deployment,
                                                     carol: Client) -> None:
    with_spool = carol.get("/activity?q=alice+was+here")
    assert with_spool.status == 200 and "alice was here" in with_spool.text


def test_login_that_cannot_be_journaled_is_refused(deployment: Deployment,
                                                   unwritable_spool: None) -> None:
    client = Client(deployment.console)
    assert client.login("dana", AUDITORS["dana"]).status == 503
    assert "phigate_console" not in client.cookies


# ---------------------------------------------------------------- integrity


def progress(client: Client) -> dict[str, Any]:
    return dict(json.loads(client.get("/integrity/progress").body))


def test_integrity_panel_of_the_live_journal(deployment: Deployment, carol: Client) -> None:
    token = carol.get("/integrity").csrf()
    started = carol.post("/integrity/verify", headers={"X-CSRF-Token": token})
    assert started.status == 200 and json.loads(started.body)["state"] in (
        "journal", "recordings", "done")
    done = wait_until(lambda: (p := progress(carol))["state"] == "done" and p)
    assert done and done["ok"] is True and done["first_bad_seq"] is None
    assert done["fraction"] == 1.0 and not done["recording_failures"]
    page = carol.get("/integrity").text
    assert 'data-state="good"' in page and "Chain verified up to seq" in page
    assert "live journal" in page and "Newest signed checkpoint" in page
    time.sleep(0)  # the panel reads the witness copy as well
    assert "/witness" in page
