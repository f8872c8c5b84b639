"""The ``alerts:`` section: sinks and rules, validated into frozen settings.

Read by ``gateway/settings/config.py`` at start-up and on SIGHUP; used by the rules
engine, the sinks and the dispatcher in this package.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..settings.values import Secret, Section

ALERT_CONDITIONS = ("failed_logins", "off_hours", "denied", "bulk_export", "volume",
                    "break_glass", "journal", "new_client", "access_request")
SINK_TYPES = ("webhook", "log", "syslog")


@dataclass(frozen=True, slots=True)
class SinkSettings:
    name: str
    type: str
    url: str | None = None
    secret: Secret | None = None  # webhook HMAC key, from secret_env
    timeout_s: float = 5.0
    max_queue: int = 1000
    retries: int = 5
    syslog_address: str | None = None  # "/dev/log" or "host:port" (UDP)
    facility: str = "auth"


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One alert rule; ``params`` holds the condition's own keys (validated here)."""

    name: str
    when: str
    sinks: tuple[str, ...]
    threshold: int | None = None
    window_s: float | None = None
    hours: str | None = None
    days: tuple[str, ...] = ()
    timezone: str | None = None
    rules: tuple[str, ...] = ()  # for `denied`: only these policy rules (empty: any)
    dedupe_s: float = 300.0


@dataclass(frozen=True, slots=True)
class AlertSettings:
    sinks: Mapping[str, SinkSettings]
    rules: tuple[AlertRule, ...]


_CONDITION_KEYS: dict[str, tuple[str, ...]] = {
    "failed_logins": ("threshold", "window"),
    "off_hours": ("hours", "days", "timezone"),
    "denied": ("rules",),
    "bulk_export": (),
    "volume": ("threshold", "window"),
    "break_glass": (),
    "journal": (),
    "new_client": (),
    "access_request": (),
}
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_alerts(section: Section, env: Mapping[str, str]) -> AlertSettings:
    section.only("sinks", "rules")
    sinks: dict[str, SinkSettings] = {}
    if "sinks" in section.data:
        sinks_section = section.child("sinks")
        sinks = {name: _sink(sinks_section.child(name), name, env)
                 for name in sinks_section.data}
    rules_value = section.data.get("rules", [])
    if not isinstance(rules_value, list):
        raise section.error("rules", "must be a list of rules")
    rules = []
    for index, item in enumerate(rules_value):
        rule = Section(item, section.file, f"{section.key_path('rules')}[{index}]",
                        section.base_dir)
        rules.append(_alert_rule(rule, sinks))
    names = [r.name for r in rules]
    for name in names:
        if names.count(name) > 1:
            raise section.error("rules", f"alert rule name {name!r} is used twice")
    return AlertSettings(sinks=sinks, rules=tuple(rules))


def _sink(sink: Section, name: str, env: Mapping[str, str]) -> SinkSettings:
    kind = sink.choice("type", SINK_TYPES, "")
    if kind == "webhook":
        sink.only("type", "url", "secret_env", "timeout", "max_queue", "retries")
        url = sink.text("url")
        if not url.startswith(("http://", "https://")):
            raise sink.error("url", "must be an http:// or https:// URL")
        secret = None
        if "secret_env" in sink.data:
            var = sink.text("secret_env")
            if var not in env:
                raise sink.error("secret_env", f"environment variable {var} is not set")
            secret = Secret(env[var])
        return SinkSettings(name=name, type=kind, url=url, secret=secret,
                            timeout_s=sink.duration("timeout", 5.0),
                            max_queue=sink.integer("max_queue", 1000, minimum=1),
                            retries=sink.integer("retries", 5))
    if kind == "syslog":
        sink.only("type", "address", "facility")
        return SinkSettings(name=name, type=kind,
                            syslog_address=sink.optional_text("address") or "/dev/log",
                            facility=sink.text("facility", "auth"))
    sink.only("type")
    return SinkSettings(name=name, type=kind)


def _alert_rule(rule: Section, sinks: Mapping[str, SinkSettings]) -> AlertRule:
    when = rule.choice("when", ALERT_CONDITIONS, "")
    rule.only("name", "when", "sinks", "dedupe", *_CONDITION_KEYS[when])
    sink_names = rule.data.get("sinks", [])
    if not isinstance(sink_names, list) or not all(isinstance(n, str) for n in sink_names):
        raise rule.error("sinks", "must be a list of sink names")
    for name in sink_names:
        if name not in sinks:
            raise rule.error("sinks", f"unknown sink {name!r} (define it under alerts.sinks)")
    days = rule.data.get("days", [])
    if not isinstance(days, list) or any(d not in _DAYS for d in days):
        raise rule.error("days", f"must be a list of: {', '.join(_DAYS)}")
    hours = rule.optional_text("hours")
    if hours is not None and not re.fullmatch(r"\d\d:\d\d-\d\d:\d\d", hours):
        raise rule.error("hours", 'must look like "07:00-19:00"')
    timezone = rule.optional_text("timezone")
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise rule.error("timezone", f"unknown time zone {timezone!r}") from e
    names = rule.data.get("rules", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise rule.error("rules", "must be a list of policy rule names")
    needs_threshold = when in ("failed_logins", "volume")
    return AlertRule(
        name=rule.text("name"), when=when, sinks=tuple(sink_names),
        threshold=rule.integer("threshold", 5 if when == "failed_logins" else 10000,
                               minimum=1) if needs_threshold else None,
        window_s=rule.duration("window", 300.0 if when == "failed_logins" else 3600.0)
        if needs_threshold else None,
        hours=hours, days=tuple(days), timezone=timezone, rules=tuple(names),
        dedupe_s=rule.duration("dedupe", 300.0),
    )
