"""The built-in alert conditions: each looks at events and says whether (and about whom)
to alert.

Driven by :class:`.engine.RulesEngine`, one condition object per configured
rule, so windows are per rule. ``observe`` gets a monotonic ``now`` for
sliding windows; ``off_hours`` reads the gateway's wall clock (the same
:class:`~gateway.clock.Clock` as policy time windows, so ``PHIGATE_TEST_NOW``
moves both). Every map keyed by something a client controls (user names and
IPs of failed logins) is bounded: the oldest subjects are forgotten first.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections import deque
from collections.abc import Callable
from typing import Protocol
from zoneinfo import ZoneInfo

from .model import Event, EventKind, Trigger
from .settings import AlertRule

# A flood of failed logins with random user names must not grow memory without bound;
# past this many subjects per rule the least recently seen are dropped.
MAX_SUBJECTS = 10_000
# Networks remembered per identity for `new_client`; an identity seen from more is noise.
MAX_NETWORKS = 256
IPV4_PREFIX, IPV6_PREFIX = 24, 64  # "the same network" for new_client
DENIED, ROW_LIMIT = "42501", "54000"
JOURNAL_SQLSTATES = frozenset({"53100", "58030"})
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Condition(Protocol):
    kinds: frozenset[EventKind]

    def observe(self, event: Event, now: float) -> Trigger | None: ...


def _user(event: Event) -> str:
    return f"user:{event.identity}"


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


class _Recent:
    """Per-subject timestamps of the last ``keep`` events, bounded in subjects."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._seen: dict[str, deque[float]] = {}

    def add(self, subject: str, now: float) -> deque[float]:
        times = self._seen.pop(subject, None) or deque(maxlen=self._keep)
        times.append(now)
        self._seen[subject] = times  # re-inserted: dict order is least recently seen first
        if len(self._seen) > MAX_SUBJECTS:
            del self._seen[next(iter(self._seen))]
        return times


class FailedLogins:
    """``threshold`` failures for one user, or from one IP, within ``window``."""

    kinds = frozenset({EventKind.LOGIN_FAILED})

    def __init__(self, rule: AlertRule) -> None:
        self.threshold = rule.threshold or 5
        self.window = rule.window_s or 300.0
        self._recent = _Recent(self.threshold)

    def observe(self, event: Event, now: float) -> Trigger | None:
        over = []
        for subject in (f"user:{event.identity}", f"ip:{event.client_ip}"):
            times = self._recent.add(subject, now)
            if len(times) >= self.threshold and now - times[0] <= self.window:
                over.append(subject)
        if not over:
            return None
        return Trigger(tuple(over), f"{self.threshold} or more failed logins for {over[0]} "
                                    f"within {self.window:g}s",
                       {"threshold": self.threshold, "window_s": self.window,
                        "user": event.identity, "client_ip": event.client_ip})


class OffHours:
    """A session, or a PHI access, outside ``hours`` on ``days`` in ``timezone``."""

    kinds = frozenset({EventKind.SESSION_STARTED, EventKind.STATEMENT})

    def __init__(self, rule: AlertRule, now: Callable[[], dt.datetime]) -> None:
        self._now = now
        self._zone = ZoneInfo(rule.timezone or "UTC")
        self._days = frozenset(_DAYS.index(d) for d in rule.days) or frozenset(range(7))
        self._hours = None
        if rule.hours:
            start, end = rule.hours.split("-")
            self._hours = (_minutes(start), _minutes(end))
        self._text = f"{rule.hours or 'any time'} {','.join(rule.days) or 'every day'} " \
                     f"{self._zone.key}"

    def on_hours(self, moment: dt.datetime) -> bool:
        local = moment.astimezone(self._zone)
        if local.weekday() not in self._days:
            return False
        if self._hours is None:
            return True
        minute, (start, end) = local.hour * 60 + local.minute, self._hours
        if start < end:
            return start <= minute < end
        return minute >= start or minute < end  # a window across midnight

    def observe(self, event: Event, now: float) -> Trigger | None:
        if event.kind is EventKind.STATEMENT and (not event.phi_tables or event.refused_sqlstate):
            return None
        moment = self._now()
        if self.on_hours(moment):
            return None
        what = "session" if event.kind is EventKind.SESSION_STARTED else "PHI access"
        return Trigger((_user(event),), f"{what} by {event.identity} outside {self._text}",
                       {"local_time": moment.astimezone(self._zone).isoformat(),
                        "phi_tables": list(event.phi_tables)})


class Denied:
    """A policy denial; with ``rules``, only denials citing one of those policy rules."""

    kinds = frozenset({EventKind.STATEMENT})

    def __init__(self, rule: AlertRule) -> None:
        self._rules = frozenset(rule.rules)

    def observe(self, event: Event, now: float) -> Trigger | None:
        if event.refused_sqlstate != DENIED:
            return None
        if self._rules and not self._rules.intersection(event.policy_rules):
            return None
        cited = ", ".join(event.policy_rules) or "policy"
        return Trigger((_user(event),), f"statement by {event.identity} denied by {cited}",
                       {"policy_rules": list(event.policy_rules)})


class BulkExport:
    """A bulk-export block fired, or a ``max_rows`` limit (or the PHI row budget) cut a
    result."""

    kinds = frozenset({EventKind.STATEMENT, EventKind.OUTCOME})

    def observe(self, event: Event, now: float) -> Trigger | None:
        if event.kind is EventKind.OUTCOME:
            cut = event.row_limit_hit
        else:
            cut = event.refused_sqlstate == ROW_LIMIT
            if event.refused_sqlstate == DENIED and event.bulk_export:
                return Trigger((_user(event),), f"bulk export by {event.identity} blocked",
                               {"policy_rules": list(event.policy_rules)})
        if not cut:
            return None
        return Trigger((_user(event),), f"row limit cut a result for {event.identity}",
                       {"rows": event.rows, "policy_rules": list(event.policy_rules)})


class Volume:
    """More than ``threshold`` PHI rows returned to one identity within ``window``."""

    kinds = frozenset({EventKind.OUTCOME})

    def __init__(self, rule: AlertRule) -> None:
        self.threshold = rule.threshold or 10_000
        self.window = rule.window_s or 3600.0
        # Per identity: (second, rows) buckets, so a busy identity costs at most one
        # entry per second of the window. Identities are configured users: bounded.
        self._buckets: dict[str, deque[list[int]]] = {}
        self._totals: dict[str, int] = {}

    def observe(self, event: Event, now: float) -> Trigger | None:
        if not event.phi_tables or event.rows <= 0 or event.identity is None:
            return None
        identity = event.identity
        buckets = self._buckets.setdefault(identity, deque())
        total = self._totals.get(identity, 0)
        while buckets and now - buckets[0][0] > self.window:
            total -= buckets.popleft()[1]
        second = int(now)
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += event.rows
        else:
            buckets.append([second, event.rows])
        total += event.rows
        self._totals[identity] = total
        if total <= self.threshold:
            return None
        return Trigger((_user(event),), f"{total} PHI rows returned to {identity} within "
                                        f"{self.window:g}s (threshold {self.threshold})",
                       {"rows_in_window": total, "threshold": self.threshold,
                        "window_s": self.window})


class BreakGlass:
    """A statement ran under a policy rule marked ``alert: true``."""

    kinds = frozenset({EventKind.STATEMENT})

    def observe(self, event: Event, now: float) -> Trigger | None:
        if not event.break_glass or event.refused_sqlstate is not None:
            return None
        return Trigger((_user(event),), f"break-glass access by {event.identity} under "
                                        f"{', '.join(event.policy_rules)}",
                       {"policy_rules": list(event.policy_rules)})


class AccessRequested:
    """Someone requested access under a ``requires_approval`` rule: approvers should look."""

    kinds = frozenset({EventKind.ACCESS_REQUESTED})

    def observe(self, event: Event, now: float) -> Trigger | None:
        d = event.details
        return Trigger((f"request:{d.get('request')}",),
                       f"{event.identity} requests access under {d.get('rule')} for "
                       f"{d.get('duration')}: {d.get('reason')} (approve: phigate access "
                       f"approve {d.get('request')})", dict(d))


class JournalTrouble:
    """The journal or a session recording could not be written (statements refused with
    53100/58030), or the journal could not be opened or verified at start."""

    kinds = frozenset({EventKind.JOURNAL_FAILED, EventKind.STATEMENT})

    def observe(self, event: Event, now: float) -> Trigger | None:
        if event.kind is EventKind.STATEMENT:
            if event.refused_sqlstate not in JOURNAL_SQLSTATES:
                return None
            return Trigger(("journal",), f"statements refused: {event.message}",
                           {"sqlstate": event.refused_sqlstate, "message": event.message})
        return Trigger(("journal",), event.message or "journal failure",
                       {"message": event.message})


class NewClient:
    """An identity connects from a network (/24, /64) it was not seen on before.

    Known networks live in memory: the first network an identity is seen on after the
    gateway starts is learned without an alert, so a restart does not page for everyone.
    """

    kinds = frozenset({EventKind.SESSION_STARTED})

    def __init__(self) -> None:
        self._known: dict[str, set[str]] = {}

    def observe(self, event: Event, now: float) -> Trigger | None:
        if event.identity is None or event.client_ip is None:
            return None
        network = _network(event.client_ip)
        known = self._known.get(event.identity)
        if known is None:
            self._known[event.identity] = {network}
            return None
        if network in known:
            return None
        if len(known) < MAX_NETWORKS:
            known.add(network)
        return Trigger((f"{_user(event)}@{network}",),
                       f"{event.identity} connected from a new network {network}",
                       {"network": network, "known_networks": len(known)})


def _network(ip: str) -> str:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip  # e.g. a Unix socket peer: compare as is
    prefix = IPV4_PREFIX if address.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def build_condition(rule: AlertRule, now: Callable[[], dt.datetime]) -> Condition:
    """The condition object for one rule (``rule.when`` is validated by the config)."""
    factories: dict[str, Callable[[], Condition]] = {
        "failed_logins": lambda: FailedLogins(rule),
        "off_hours": lambda: OffHours(rule, now),
        "denied": lambda: Denied(rule),
        "bulk_export": BulkExport,
        "volume": lambda: Volume(rule),
        "break_glass": BreakGlass,
        "journal": JournalTrouble,
        "new_client": NewClient,
        "access_request": AccessRequested,
    }
    return factories[rule.when]()
