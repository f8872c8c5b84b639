"""The console on a tampered offline copy of the journal, over TLS, and with bad configs.

The offline copy is the live journal copied aside with one statement's text altered (the
kind of edit someone hiding a query would make); a second console shows that copy: the
integrity panel turns red with the same first bad seq as ``phigate journal verify``, and the
index stops where the chain stops linking. The TLS console serves HTTPS with Secure cookies
and HSTS. Configs the console must refuse exit 2 through the entry point.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.console.conftest import AUDITORS, Deployment, Offline, second_console, wait_until
from tests.console.harness import Client
from tests.e2e.harness import PHIGATE, deep_merge
from tests.pki import self_signed_cert


def test_a_tampered_copy_turns_the_integrity_panel_red(deployment: Deployment,
                                                       offline: Offline) -> None:
    console, copy, altered = offline.console, offline.copy, offline.altered_seq
    cli = subprocess.run([str(PHIGATE), "journal", "verify", str(copy), "--key",
                          str(deployment.gateway.public_key)],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode != 0
    client = Client(console)
    assert client.login("carol", AUDITORS["carol"]).status == 303
    done = wait_until(lambda: (p := json.loads(client.get("/integrity/progress").body))[
        "state"] == "done" and p)  # the console verifies once at start-up
    assert done and done["ok"] is False
    assert f"seq {done['first_bad_seq']}" in cli.stdout + cli.stderr
    assert done["first_bad_seq"] in (altered, altered + 1)
    page = client.get("/integrity").text
    assert 'data-state="bad"' in page and "first bad seq" in page
    assert f"<strong>{done['first_bad_seq']}</strong>" in page
    assert 'id="index-broken"' in page and "offline copy" in page


def test_the_index_of_a_tampered_copy_stops_at_the_break(deployment: Deployment,
                                                         offline: Offline) -> None:
    console = offline.console
    client = Client(console)
    client.login("carol", AUDITORS["carol"])
    after = client.get("/activity?identity=alice&sort=oldest").text
    live = Client(deployment.console)
    live.login("carol", AUDITORS["carol"])
    assert "alice was here" in live.get("/activity?q=alice").text
    shown = re.findall(r"<strong>(\d+)</strong> statement", after)
    total = re.findall(r"<strong>(\d+)</strong> statement",
                       live.get("/activity?identity=alice").text)
    assert int(shown[0]) < int(total[0])  # nothing after the broken link is indexed
    assert "SELECT id FROM patients WHERE id = 1;" not in after  # a later session


def test_views_of_an_offline_copy_are_journaled_in_the_live_journal(
        deployment: Deployment, offline: Offline) -> None:
    client = Client(offline.console)
    client.login("dana", AUDITORS["dana"])
    assert client.get("/people").status == 200
    people = [a for a in deployment.entries("audit_access") if a["action"] == "console people"]
    assert people[-1]["as"] == "dana"


def test_tls_console(deployment: Deployment) -> None:
    cert, key = self_signed_cert(deployment.root)
    console = second_console(deployment, "tls", tls={"cert": str(cert), "key": str(key)})
    try:
        client = Client(console)
        form = client.get("/login")
        assert form.headers["Strict-Transport-Security"].startswith("max-age=")
        login_cookie = next(c for c in form.set_cookies if c.startswith("phigate_login="))
        assert "Secure" in login_cookie
        answer = client.login("carol", AUDITORS["carol"])
        assert answer.status == 303
        cookie = next(c for c in answer.set_cookies if c.startswith("phigate_console="))
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert client.get("/activity?identity=bob").status == 200
    finally:
        console.stop()


@pytest.mark.parametrize("console, message", [
    (None, "no console section"),
    ({"listen": "0.0.0.0:9999", "auditors": ["carol"]}, "loopback"),
    ({"listen": "127.0.0.1:9999", "auditors": []}, "auditors"),
    ({"listen": "127.0.0.1:9999", "auditors": ["carol"], "colour": "red"}, "colour"),
])
def test_bad_console_configs_exit_2(deployment: Deployment, tmp_path: Path,
                                    console: dict[str, Any] | None, message: str) -> None:
    config = deep_merge(deployment.config, {"console": console})
    path = tmp_path / "phigate.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    ran = subprocess.run([str(PHIGATE), "console", "-c", str(path)], capture_output=True,
                         text=True, timeout=30)
    assert ran.returncode == 2 and message in ran.stderr, ran.stderr


def test_a_taken_port_exits_2(deployment: Deployment, tmp_path: Path) -> None:
    config = deep_merge(deployment.config, {"console": {"index": str(tmp_path / "i.sqlite3")}})
    path = tmp_path / "phigate.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")  # the running console's port
    ran = subprocess.run([str(PHIGATE), "console", "-c", str(path)], capture_output=True,
                         text=True, timeout=30)
    assert ran.returncode == 2 and "cannot listen" in ran.stderr, ran.stderr
