"""Alerts and metrics through a real gateway: webhooks, off-hours, a dead SIEM, scrapes, /readyz."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import CLINIC_POLICY, PHIGATE, REPO, GatewayProcess, free_port, psql

SECRET = "webhook-secret-for-tests"
SECRET_ENV = {"PHIGATE_WEBHOOK_SECRET": SECRET}
SATURDAY_NIGHT = "2026-11-28T23:00:00-05:00"
TUESDAY_MORNING = "2026-12-01T10:00:00-05:00"
BULK_EXPORT = "SELECT * FROM patients;\n"  # denied for alice by no-bulk-export


# -- helpers ------------------------------------------------------------------------------

class WebhookReceiver:
    """A real HTTP server on a free port, recording each POST (headers, raw body)."""

    def __init__(self) -> None:
        received: list[tuple[dict[str, str], bytes]] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 — the name http.server calls
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class DeadReceiver:
    """Accepts TCP connections and closes them at once: a webhook that never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.attempts = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.attempts += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    found = WebhookReceiver()
    yield found
    found.close()


def alerting(url: str, *rules: dict[str, Any], retries: int = 2) -> dict[str, Any]:
    return {"alerts": {
        "sinks": {"hook": {"type": "webhook", "url": url, "secret_env": "PHIGATE_WEBHOOK_SECRET",
                           "retries": retries, "timeout": "2s"},
                  "ops-log": {"type": "log"}},
        "rules": list(rules)}}


def with_metrics(overrides: dict[str, Any]) -> dict[str, Any]:
    return {**overrides, "metrics": f"127.0.0.1:{free_port()}"}


def metrics_port(gateway: GatewayProcess) -> int:
    return int(str(gateway.config["metrics"]).rsplit(":", 1)[1])


def get(gateway: GatewayProcess, path: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{metrics_port(gateway)}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(gateway: GatewayProcess) -> Samples:
    status, text = get(gateway, "/metrics")
    assert status == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def journal_entries(gateway: GatewayProcess, kind: str) -> list[dict[str, Any]]:
    result = subprocess.run([str(PHIGATE), "journal", "show",
                             str(gateway.journal_dir), "--json", "--type", kind], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# -- alerts -------------------------------------------------------------------------------

def test_failed_login_burst_sends_one_signed_deduplicated_alert(
        start_gateway: Callable[..., GatewayProcess], receiver: WebhookReceiver) -> None:
    rule = {"name": "brute-force", "when": "failed_logins", "threshold": 3, "window": "1m",
            "sinks": ["hook"]}
    gateway = start_gateway(alerting(receiver.url, rule), env=SECRET_ENV)
    for _ in range(6):
        assert psql(gateway, "SELECT 1", password="wrong").returncode != 0
    assert wait_for(lambda: len(receiver.received) >= 1)
    time.sleep(0.5)  # a second alert would have arrived by now
    [(headers, body)] = receiver.received
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-phigate-signature"], f"sha256={expected}")
    document = json.loads(body)
    assert (document["rule"], document["condition"], document["subject"]) == (
        "brute-force", "failed_logins", "user:alice")
    assert document["identity"] == "alice" and document["client_ip"] == "127.0.0.1"
    assert gateway.stop() == 0
    [entry] = journal_entries(gateway, "alert")
    assert entry["alert"] == document["id"] and entry["rule"] == "brute-force"


@pytest.mark.parametrize(("now", "alerts"), [(SATURDAY_NIGHT, 1), (TUESDAY_MORNING, 0)])
def test_off_hours_phi_access_alerts_on_the_injected_clock(
        start_gateway: Callable[..., GatewayProcess], now: str, alerts: int) -> None:
    rule = {"name": "after-hours-phi", "when": "off_hours", "hours": "07:00-19:00",
            "days": ["mon", "tue", "wed", "thu", "fri"], "timezone": "America/New_York",
            "sinks": ["ops-log"]}
    overrides = {**alerting("http://127.0.0.1:9/unused", rule),
                 "policies": [str(CLINIC_POLICY)]}
    gateway = start_gateway(overrides, env={**SECRET_ENV, "PHIGATE_TEST_NOW": now})
    result = psql(gateway, "SELECT mrn FROM patients WHERE id = 3")
    assert result.returncode == 0, result.stderr
    assert gateway.stop() == 0
    entries = journal_entries(gateway, "alert")
    assert len(entries) == alerts
    logged = [json.loads(line) for line in gateway.log().splitlines()
              if '"logger": "phigate.alert"' in line]
    assert len(logged) == alerts
    if alerts:
        assert entries[0]["condition"] == "off_hours" and entries[0]["identity"] == "alice"
        assert logged[0]["alert"]["time"].startswith("2026-11-29T04:00")  # the shifted clock


def test_alerts_on_a_read_point_at_its_journal_entry(
        start_gateway: Callable[..., GatewayProcess]) -> None:
    """A read runs while its entry is synced (no callback per entry tags its seq): the
    break-glass alert, raised as it is decided, and the volume alert, raised on its outcome,
    both name the seq of its ``statement`` entry."""
    rules = ({"name": "glass", "when": "break_glass", "sinks": ["ops-log"]},
             {"name": "phi-volume", "when": "volume", "threshold": 1, "window": "1h",
              "sinks": ["ops-log"]})
    gateway = start_gateway({**alerting("http://127.0.0.1:9/unused", *rules),
                             "policies": [str(CLINIC_POLICY)]}, env=SECRET_ENV)
    result = psql(gateway, "SELECT mrn FROM patients WHERE id <= 3", user="oncall",
                  env={"PGOPTIONS": "-c phigate.reason=INC-1234"})
    assert result.returncode == 0, result.stderr
    assert gateway.stop() == 0
    [read] = [e for e in journal_entries(gateway, "statement") if "patients" in e["sql"]]
    alerts = {e["rule"]: e for e in journal_entries(gateway, "alert")}
    assert set(alerts) == {"glass", "phi-volume"}
    assert alerts["glass"]["trigger_seq"] == alerts["phi-volume"]["trigger_seq"] == read["seq"]


def test_dead_webhook_never_slows_statements_and_is_journaled_as_failed(
        start_gateway: Callable[..., GatewayProcess]) -> None:
    dead = DeadReceiver()
    try:
        rule = {"name": "export-attempt", "when": "bulk_export", "sinks": ["hook"]}
        overrides = with_metrics({**alerting(dead.url, rule, retries=2),
                                  "policies": [str(CLINIC_POLICY)]})
        gateway = start_gateway(overrides, env=SECRET_ENV)
        started = time.monotonic()
        result = psql(gateway, args=("-v", "ON_ERROR_STOP=0"), stdin=BULK_EXPORT * 50)
        elapsed = time.monotonic() - started
        attempts_when_done = dead.attempts
        assert result.stderr.count("no-bulk-export") == 50
        # Two retries back off 0.5 s then 1 s: statements that waited for the webhook could
        # not finish before both had passed, nor before the third attempt.
        print(f"50 statements with the webhook down: {elapsed:.3f}s")
        assert elapsed < 1.3 and attempts_when_done < 3, (elapsed, attempts_when_done)
        assert wait_for(lambda: value(scrape(gateway), "phigate_alerts_failed_total",
                                      sink="hook") == 1)
        assert dead.attempts == 3
        assert gateway.stop() == 0
    finally:
        dead.close()
    [alert] = journal_entries(gateway, "alert")
    [failed] = journal_entries(gateway, "alert_failed")
    assert alert["rule"] == "export-attempt" and alert["session"] and alert["n"] == 1
    assert (failed["alert"], failed["sink"], failed["attempts"]) == (alert["alert"], "hook", 3)


# -- metrics and health -------------------------------------------------------------------

def test_metrics_count_a_scripted_session(start_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_gateway(with_metrics({"policies": [str(CLINIC_POLICY)]}))
    assert get(gateway, "/healthz") == (200, "ok\n")
    before = scrape(gateway)
    script = "SELECT 1;\nSELECT 2;\nSELECT 3;\n" + BULK_EXPORT
    result = psql(gateway, args=("-v", "ON_ERROR_STOP=0"), stdin=script)
    assert "no-bulk-export" in result.stderr
    assert psql(gateway, "SELECT 1", password="wrong").returncode != 0
    assert wait_for(lambda: value(scrape(gateway), "phigate_sessions_active",
                                  database="clinic") == 0)
    after = scrape(gateway)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("phigate_auth_attempts_total", result="success") == 1
    assert delta("phigate_auth_attempts_total", result="failure") == 1
    assert delta("phigate_sessions_total", database="clinic") == 1
    assert delta("phigate_statements_total", **{"class": "select", "decision": "allow"}) == 3
    assert delta("phigate_statements_total", **{"class": "select", "decision": "deny"}) == 1
    assert delta("phigate_denials_total", rule="no-bulk-export") == 1
    assert delta("phigate_rows_returned_total", database="clinic") == 3
    assert delta("phigate_bytes_returned_total", database="clinic") > 0
    assert delta("phigate_gateway_latency_seconds_count") == 3  # refused ones never forward
    assert delta("phigate_statement_duration_seconds_count") == 3
    assert delta("phigate_journal_append_seconds_count") == 4  # the denial is journaled too
    assert delta("phigate_journal_entries_total") >= 4 + 4  # statements and their outcomes
    # Every entry sits in exactly one group-commit batch.
    assert delta("phigate_journal_batch_size_sum") == delta("phigate_journal_entries_total")
    assert delta("phigate_journal_batch_size_count") == delta("phigate_journal_batches_total")
    assert value(after, "phigate_journal_batch_size_bucket", le="+Inf") == value(
        after, "phigate_journal_batch_size_count")
    assert value(after, "phigate_journal_writable") == 1
    assert value(after, "phigate_journal_last_checkpoint_seq") > 0
    assert value(after, "phigate_journal_bytes") > 0
    seen = {pair for (_, labels) in after for pair in labels if pair[0] not in ("le", "version")}
    assert seen <= {("database", "clinic"), ("class", "select"), ("decision", "allow"),
                    ("decision", "deny"), ("result", "success"), ("result", "failure"),
                    ("rule", "no-bulk-export")}, "label values must stay bounded"


def test_readyz_turns_unready_when_the_journal_directory_is_unwritable(
        start_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_gateway(with_metrics({}))
    status, body = get(gateway, "/readyz")
    assert status == 200, body
    assert json.loads(body)["checks"] == {"listening": "ok", "journal": "ok", "upstream": "ok"}
    journal_dir = gateway.journal_dir
    chattr = subprocess.run(["chattr", "+i", str(journal_dir)], capture_output=True, text=True)
    if chattr.returncode != 0:  # needs root (CAP_LINUX_IMMUTABLE) and ext4/xfs/tmpfs
        pytest.fail(f"cannot make the journal directory immutable: {chattr.stderr}")
    try:
        status, body = get(gateway, "/readyz")
        assert status == 503
        assert "not writable" in json.loads(body)["checks"]["journal"]
        assert value(scrape(gateway), "phigate_ready") == 0
    finally:
        subprocess.run(["chattr", "-i", str(journal_dir)], check=True)
    assert get(gateway, "/readyz")[0] == 200
    assert gateway.stop() == 0


def test_alerts_test_command_reports_each_sink(tmp_path: Path,
                                               receiver: WebhookReceiver) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook"
    config = {"databases": {"clinic": {"host": "127.0.0.1", "user": "x"}},
              **alerting(receiver.url)}
    config["alerts"]["sinks"]["broken"] = {"type": "webhook", "url": dead}
    path = tmp_path / "phigate.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    result = subprocess.run([str(PHIGATE), "alerts", "test", "-c",
                             str(path)], cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={**SECRET_ENV, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1, result.stdout + result.stderr
    lines = sorted(result.stdout.splitlines())
    assert lines[0].startswith("broken (webhook): FAILED: cannot connect")
    assert lines[1:] == ["hook (webhook): ok", "ops-log (log): ok"]
    [(headers, body)] = receiver.received
    assert json.loads(body)["rule"] == "phigate-alerts-test"
    assert headers["x-phigate-signature"].startswith("sha256=")
