"""The alert rules engine without sockets: conditions, windows and dedupe, on a fake clock."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.alerts.engine import RulesEngine, journal_failure_alerts
from gateway.alerts.model import Alert, Event, EventKind
from gateway.alerts.settings import AlertRule

# A Saturday night in New York, and a Tuesday morning.
SATURDAY_NIGHT = dt.datetime(2026, 11, 28, 23, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
TUESDAY_MORNING = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0
        self.wall = TUESDAY_MORNING

    def monotonic(self) -> float:
        return self.t

    def now(self) -> dt.datetime:
        return self.wall


def engine(*rules: AlertRule, clock: FakeTime | None = None) -> tuple[RulesEngine, FakeTime,
                                                                       list[str]]:
    clock = clock or FakeTime()
    suppressed: list[str] = []
    return (RulesEngine(rules, clock.now, monotonic=clock.monotonic,
                        on_suppressed=suppressed.append), clock, suppressed)


def failed(user: str = "alice", ip: str = "10.0.0.5") -> Event:
    return Event(EventKind.LOGIN_FAILED, identity=user, client_ip=ip)


def statement(**fields: object) -> Event:
    base: dict[str, object] = {"identity": "alice", "client_ip": "10.0.0.5",
                               "session": "s1", "statement": 3}
    return Event(EventKind.STATEMENT, **{**base, **fields})  # type: ignore[arg-type]


BRUTE = AlertRule("brute-force", "failed_logins", ("hook",), threshold=3, window_s=60.0,
                  dedupe_s=300.0)


def test_failed_login_burst_fires_once_per_dedupe_window() -> None:
    rules, clock, suppressed = engine(BRUTE)
    fired: list[Alert] = []
    for _ in range(10):
        fired += rules.observe(failed())
        clock.t += 1
    assert len(fired) == 1
    alert = fired[0]
    assert (alert.rule, alert.condition, alert.subject) == ("brute-force", "failed_logins",
                                                            "user:alice")
    assert alert.identity == "alice" and alert.client_ip == "10.0.0.5"
    assert suppressed == ["brute-force"] * 7  # the user's and the IP's later failures
    clock.t += 300  # the dedupe window has passed: a new burst alerts again
    fired = [a for _ in range(3) for a in rules.observe(failed())]
    assert len(fired) == 1


def test_failures_spread_beyond_the_window_do_not_fire() -> None:
    rules, clock, _ = engine(BRUTE)
    for _ in range(10):
        assert rules.observe(failed()) == []
        clock.t += 31  # never three within 60 s


def test_one_ip_spraying_many_users_fires_on_the_ip() -> None:
    rules, _, _ = engine(BRUTE)
    fired = [a for n in range(5) for a in rules.observe(failed(user=f"user{n}"))]
    assert [a.subject for a in fired] == ["ip:10.0.0.5"]


def test_client_chosen_user_names_do_not_grow_memory_without_bound() -> None:
    rules, _, _ = engine(BRUTE)
    for n in range(30_000):
        rules.observe(failed(user=f"u{n}", ip=f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"))
    recent = rules._by_kind[EventKind.LOGIN_FAILED][0].condition._recent  # type: ignore[attr-defined]
    assert len(recent._seen) <= 10_000


AFTER_HOURS = AlertRule("after-hours-phi", "off_hours", ("hook",), hours="07:00-19:00",
                        days=("mon", "tue", "wed", "thu", "fri"), timezone="America/New_York")


@pytest.mark.parametrize(("wall", "expected"), [(SATURDAY_NIGHT, 1), (TUESDAY_MORNING, 0)])
def test_off_hours_uses_the_injected_clock(wall: dt.datetime, expected: int) -> None:
    clock = FakeTime()
    clock.wall = wall
    rules, _, _ = engine(AFTER_HOURS, clock=clock)
    session = Event(EventKind.SESSION_STARTED, identity="alice", client_ip="10.0.0.5")
    assert len(rules.observe(session)) == expected


def test_off_hours_phi_access_alerts_but_non_phi_does_not() -> None:
    clock = FakeTime()
    clock.wall = SATURDAY_NIGHT
    rules, _, _ = engine(AFTER_HOURS, clock=clock)
    phi = ("clinic.public.patients",)
    assert rules.observe(statement()) == []
    assert rules.observe(statement(phi_tables=phi, refused_sqlstate="42501")) == []
    [alert] = rules.observe(statement(phi_tables=phi))
    assert "PHI access" in alert.summary and alert.time.startswith("2026-11-28T23:00")


def test_off_hours_window_across_midnight() -> None:
    night_shift = AlertRule("night", "off_hours", ("hook",), hours="22:00-06:00", timezone="UTC")
    clock = FakeTime()
    rules, _, _ = engine(night_shift, clock=clock)
    session = Event(EventKind.SESSION_STARTED, identity="alice", client_ip="10.0.0.5")
    clock.wall = dt.datetime(2026, 1, 1, 23, 30, tzinfo=dt.UTC)
    assert rules.observe(session) == []
    clock.wall = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    assert len(rules.observe(session)) == 1


def test_denied_filters_by_policy_rule() -> None:
    only_export = AlertRule("export-denials", "denied", ("hook",), rules=("no-bulk-export",),
                            dedupe_s=0.0)
    rules, _, _ = engine(only_export)
    assert rules.observe(statement(refused_sqlstate="42501", policy_rules=("default-deny",))) == []
    [alert] = rules.observe(statement(refused_sqlstate="42501", policy_rules=("no-bulk-export",)))
    assert alert.session == "s1" and alert.statement == 3


def test_bulk_export_block_and_row_limit_cut() -> None:
    rule = AlertRule("export-attempt", "bulk_export", ("hook",), dedupe_s=0.0)
    rules, _, _ = engine(rule)
    assert rules.observe(statement(bulk_export=True)) == []  # allowed: no block fired
    assert len(rules.observe(statement(bulk_export=True, refused_sqlstate="42501"))) == 1
    assert len(rules.observe(statement(refused_sqlstate="54000"))) == 1
    outcome = Event(EventKind.OUTCOME, identity="alice", rows=500, row_limit_hit=True)
    assert len(rules.observe(outcome)) == 1


def test_volume_counts_phi_rows_within_the_window() -> None:
    rule = AlertRule("volume", "volume", ("hook",), threshold=1000, window_s=60.0)
    rules, clock, _ = engine(rule)

    def rows(n: int) -> list[Alert]:
        return rules.observe(Event(EventKind.OUTCOME, identity="alice", rows=n,
                                   phi_tables=("clinic.public.patients",)))

    assert rows(600) == []
    clock.t += 61  # the first 600 left the window
    assert rows(600) == []
    clock.t += 1
    [alert] = rows(401)
    assert alert.details["rows_in_window"] == 1001
    assert rules.observe(Event(EventKind.OUTCOME, identity="bob", rows=5000)) == []  # no PHI


def test_break_glass_only_when_the_statement_runs() -> None:
    rules, _, _ = engine(AlertRule("break-glass", "break_glass", ("hook",)))
    assert rules.observe(statement(break_glass=True, refused_sqlstate="42501")) == []
    [alert] = rules.observe(statement(break_glass=True, policy_rules=("break-glass",)))
    assert alert.subject == "user:alice"


def test_journal_failures_share_one_subject() -> None:
    rules, _, _ = engine(AlertRule("journal", "journal", ("hook",)))
    assert len(rules.observe(Event(EventKind.JOURNAL_FAILED, message="disk full"))) == 1
    assert rules.observe(statement(refused_sqlstate="53100")) == []  # same incident
    rules, _, _ = engine(AlertRule("journal", "journal", ("hook",)))
    [alert] = rules.observe(statement(refused_sqlstate="58030",
                                      message="phigate: the session recording cannot be written"))
    assert alert.summary == "statements refused: phigate: the session recording cannot be written"
    fired = journal_failure_alerts((AlertRule("j", "journal", ("hook",)), BRUTE),
                                   "tampered", FakeTime().now)
    assert [a.rule for a in fired] == ["j"] and fired[0].summary == "tampered"


def test_new_client_learns_the_first_network_then_alerts_on_new_ones() -> None:
    rules, _, _ = engine(AlertRule("new-client", "new_client", ("hook",)))

    def connect(ip: str) -> list[Alert]:
        return rules.observe(Event(EventKind.SESSION_STARTED, identity="alice", client_ip=ip))

    assert connect("10.0.0.5") == []
    assert connect("10.0.0.77") == []  # same /24
    [alert] = connect("192.168.1.4")
    assert alert.details["network"] == "192.168.1.0/24"
    assert connect("192.168.1.9") == []  # now known
    assert len(connect("2001:db8::1")) == 1


def test_alert_document_and_journal_fields() -> None:
    rules, _, _ = engine(AlertRule("break-glass", "break_glass", ("hook", "log")))
    [alert] = rules.observe(statement(break_glass=True, journal_seq=42))
    document = alert.document()
    assert {"id", "rule", "identity", "client_ip", "session", "journal_seq"} <= set(document)
    assert document["journal_seq"] == 42
    fields = alert.journal_fields()
    assert fields["trigger_seq"] == 42 and fields["sinks"] == ["hook", "log"]
    assert "seq" not in fields and fields["session"] == "s1" and fields["n"] == 3
