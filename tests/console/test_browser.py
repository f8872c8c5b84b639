"""The console in headless Chromium (Debian's, driven by Playwright; nothing downloaded).

Against the package's live deployment and the tampered offline copy: sign in, search a
person's PHI statements, open a session and play its replay (statements appear at their
pace), a tampered journal turns the integrity panel red, export CSV, sign in through the real
OpenID provider's login form. With
``PHIGATE_SCREENSHOTS=DIR`` the tests also save the screenshots the README shows
(``docs/screenshots.sh``).
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.console.conftest import AUDITORS, Deployment, Offline, SsoConsole, wait_until
from tests.sso.idp import IdentityProvider, email

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = os.environ.get("PHIGATE_SCREENSHOTS")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is required in CI ({CHROMIUM}; apt-get install chromium)")
        pytest.skip(f"Chromium not installed at {CHROMIUM}")
    with sync_playwright() as playwright:
        # As root Chromium needs --no-sandbox; the pages are our own.
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=["--no-sandbox"])
        yield launched
        launched.close()


def signed_in(browser: Browser, url: str, user: str = "carol") -> Page:
    page = browser.new_context(viewport={"width": 1440, "height": 900},
                               accept_downloads=True).new_page()
    page.goto(f"{url}/activity")
    expect(page).to_have_url(f"{url}/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", AUDITORS[user])
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{url}/dashboard")
    return page


def shot(page: Page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"console-{name}.png"), full_page=False)


def test_sign_in_and_search_a_persons_phi_statements(browser: Browser,
                                                     deployment: Deployment) -> None:
    page = signed_in(browser, deployment.console.url)
    expect(page.locator("svg.chart").first).to_be_visible()
    shot(page, "dashboard")
    page.click("header nav >> text=Activity")
    page.select_option("select[name=identity]", "alice")
    page.check("input[name=phi]")
    page.fill("input[name=q]", "mrn")
    page.click("form.filters button[type=submit]")
    expect(page).to_have_url(f"{deployment.console.url}/activity?identity=alice&group="
                             "&database=&table=&decision=&since=&until=&q=mrn&phi=1&sort=")
    rows = page.locator("table.activity tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("SELECT id, mrn, last_name FROM patients")
    expect(rows.first.locator("span.local")).to_contain_text("local")  # the script ran
    page.goto(f"{deployment.console.url}/activity?identity=alice")
    shot(page, "activity")


def test_open_a_session_and_play_its_replay(browser: Browser, deployment: Deployment) -> None:
    page = signed_in(browser, deployment.console.url)
    page.goto(f"{deployment.console.url}/activity?q=alice+was+here")
    page.locator("table.activity tbody tr a.mono").first.click()
    expect(page).to_have_url(f"{deployment.console.url}/sessions/{deployment.alice_session}")
    player = page.locator("#player")
    expect(player).to_have_attribute("data-loaded", "12")  # session, 5 × (statement, result), end
    statements = page.locator("#screen .ev[data-kind=statement]")
    expect(statements).to_have_count(0)
    page.select_option("#speed", "0.5")
    page.click("#play")
    expect(statements.first).to_contain_text("SELECT id, mrn, last_name")
    # The third statement waits for the second one's pg_sleep(1): 2 s at half speed.
    assert statements.count() < 5
    page.click("#play")  # pause
    expect(player).to_have_attribute("data-playing", "0")
    paused = statements.count()
    page.wait_for_timeout(1200)
    assert statements.count() == paused
    page.select_option("#speed", "16")
    page.click("#play")
    expect(statements).to_have_count(5)
    expect(page.locator("#screen")).to_contain_text("alice was here")
    expect(page.locator("#screen .denied").first).to_contain_text("DENIED")
    expect(page.locator("#screen table").first).to_contain_text("mrn")
    expect(page.locator("#status")).to_have_text("end of recording")
    shot(page, "session")
    page.locator("#seek").fill("0")  # seek back to the start: the screen empties
    expect(statements).to_have_count(0)


def test_live_follow_of_a_running_session(browser: Browser, deployment: Deployment) -> None:
    known = {e["session"] for e in deployment.entries("session_start")}
    psql = subprocess.Popen(["psql", "-X", "-q", "-d", deployment.gateway.dsn("alice")],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert psql.stdin is not None
        psql.stdin.write("SELECT 'live one' AS step;\n")
        psql.stdin.flush()
        session = wait_until(lambda: next(
            (e["session"] for e in deployment.entries("session_start")
             if e["session"] not in known), None))
        assert session, "the live session was not journaled"
        page = signed_in(browser, deployment.console.url)
        url = f"{deployment.console.url}/sessions/{session}"
        page.goto(url)
        deadline = time.monotonic() + 15
        while "still open" not in page.content():  # the index follows the journal each second
            assert time.monotonic() < deadline, "the live session never reached the index"
            page.wait_for_timeout(300)
            page.reload()
        expect(page.locator("#follow")).to_be_checked()
        page.click("#play")
        expect(page.locator("#screen")).to_contain_text("live one")
        psql.stdin.write("SELECT 'live two' AS step;\n")
        psql.stdin.flush()
        expect(page.locator("#screen")).to_contain_text("live two", timeout=15_000)
        psql.stdin.close()
        expect(page.locator("#status")).to_have_text("end of recording", timeout=15_000)
    finally:
        psql.kill()
        psql.wait()


def test_a_tampered_journal_turns_the_integrity_panel_red(browser: Browser,
                                                          offline: Offline) -> None:
    page = signed_in(browser, offline.console.url)
    page.click("header nav >> text=Integrity")
    with page.expect_navigation():  # the page reloads with the result once it is done
        page.click("#verify")
    expect(page.locator("#progress")).to_be_hidden()
    expect(page.locator("#integrity-state")).to_have_attribute("data-state", "bad")
    expect(page.locator("#first-bad")).to_contain_text("first bad seq")
    expect(page.locator("#integrity-state")).to_have_css("background-color", "rgb(180, 35, 24)")
    expect(page.locator("header .badge")).to_have_text("offline copy")
    shot(page, "integrity-tampered")


def test_the_live_journal_integrity_panel_is_green(browser: Browser,
                                                   deployment: Deployment) -> None:
    page = signed_in(browser, deployment.console.url)
    page.goto(f"{deployment.console.url}/integrity")
    with page.expect_navigation():
        page.click("#verify")
    expect(page.locator("p.ok").first).to_contain_text("Chain verified up to seq")
    expect(page.locator("#integrity-state")).to_have_attribute("data-state", "good")


def test_export_csv(browser: Browser, deployment: Deployment) -> None:
    page = signed_in(browser, deployment.console.url, user="dana")
    page.goto(f"{deployment.console.url}/activity?decision=deny")
    with page.expect_download() as download:
        page.click("text=Export CSV")
    saved = Path(download.value.path())
    assert download.value.suggested_filename.endswith(".csv")
    table = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"))))
    assert sorted(r["identity"] for r in table) == ["alice", "bob"]
    assert all(r["verdict"] == "deny" for r in table)
    exports = [a for a in deployment.entries("audit_access") if a["action"] == "console export"]
    assert exports[-1]["as"] == "dana" and exports[-1]["filters"]["format"] == "csv"


def test_sign_in_through_the_identity_providers_login_form(browser: Browser, idp: IdentityProvider,
                                                          sso: SsoConsole) -> None:
    """The whole way a hospital's auditor takes: the console's button, the provider's own
    login page, back to the console (its Strict session cookie survives the way back)."""
    url = sso.console.url
    context = browser.new_context(ignore_https_errors=True)  # the test provider's own CA
    page = context.new_page()
    page.goto(f"{url}/people")
    expect(page).to_have_url(f"{url}/login")
    page.click("#sso")
    expect(page).to_have_url(re.compile("^" + re.escape(f"{idp.issuer}/interaction/")))
    page.fill("input[name=login]", "priya")
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{url}/dashboard")
    expect(page.locator("header .me")).to_have_text(email("priya"))
    page.click("header nav >> text=People")
    expect(page).to_have_url(f"{url}/people")
    context.close()
