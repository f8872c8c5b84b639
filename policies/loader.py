"""YAML policy text → validated ``Policy``; every error says ``file:line: key.path: message``.

The caller reads the file (the gateway owns I/O) and passes its text and a source name.
Parsing is ``policies/yamlsource.py`` (safe, line-tracking, duplicate keys refused), shared
with the gateway's config loader. Unknown keys, unknown classes, bad CIDRs,
time windows, time zones and day names are all errors. Time zones are looked up with
``zoneinfo``, which reads the system time-zone database (the one read this package does).
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import re
from collections.abc import Iterable
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from policies.approval import parse_approval
from policies.masking_load import masking_rules, phi_columns
from policies.model import (
    ALLOW_ITEMS,
    BULK_EXPORT,
    DAY_NAMES,
    DENY_ITEMS,
    Network,
    PhiAccess,
    Policy,
    Rule,
    TimeWindow,
)
from policies.phi import parse_pattern
from policies.sizes import parse_size
from policies.yamlsource import LocatedList, LocatedMap, YamlSyntaxError, parse_located

TOP_KEYS = frozenset({"phi_tables", "rules", "enforce", "description", "version",
                      "phi_columns", "masking"})
RULE_KEYS = frozenset(
    {
        "name", "description", "users", "groups", "databases", "clients", "hours", "days",
        "timezone", "require_reason", "allow", "deny", "phi", "max_rows",
        "max_phi_rows_per_hour", "max_bytes", "max_phi_bytes_per_hour", "alert",
        "requires_approval",
    }
)  # fmt: skip
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class PolicyError(Exception):
    """A policy file problem, located by source, line and key path."""

    def __init__(self, message: str, *, source: str, line: int | None = None,
                 key: str | None = None) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


def parse_yaml(text: str, source: str) -> Any:
    """YAML text → plain data whose mappings and sequences remember line numbers."""
    try:
        return parse_located(text)
    except YamlSyntaxError as e:
        raise PolicyError(e.message, source=source, line=e.line) from e


def load_policy(text: str, source: str) -> Policy:
    """Validate one policy file's text. Raises ``PolicyError``."""
    data = parse_yaml(text, source)
    v = _Validator(source)
    if not isinstance(data, LocatedMap):
        v.fail(getattr(data, "line", 1), "", "a policy file is a mapping with phi_tables and rules")
    v.check_keys(data, "", TOP_KEYS)
    if "rules" not in data:
        v.fail(data.line, "rules", "missing (an empty list denies everything)")
    phi_tables = v.phi_tables(data)
    enforce = v.boolean(data, "enforce", "enforce", default=True)
    rules = v.rules(data)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Policy(source=source, sha256=digest, phi_tables=phi_tables, rules=rules,
                  enforce=enforce, phi_columns=phi_columns(v, data),
                  masking=masking_rules(v, data))


def load_policies(files: Iterable[tuple[str, str]]) -> tuple[Policy, ...]:
    """Several (text, source) pairs; rule names must be unique across all of them."""
    policies = tuple(load_policy(text, source) for text, source in files)
    seen: dict[str, Rule] = {}
    for policy in policies:
        for rule in policy.rules:
            if rule.name in seen:
                src, _, line = rule.source.rpartition(":")
                first = seen[rule.name].source
                raise PolicyError(f"rule name {rule.name!r} already used at {first}",
                                  source=src, line=int(line), key="name")
            seen[rule.name] = rule
    return policies


class _Validator:
    """Turns the line-annotated data of one file into model objects, failing with locations."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, line: int | None, key: str, message: str, *,
             cause: Exception | None = None) -> NoReturn:
        raise PolicyError(message, source=self.source, line=line, key=key or None) from cause

    def check_keys(self, data: LocatedMap, path: str, allowed: frozenset[str]) -> None:
        for key in data:
            if key not in allowed:
                hint = _suggest(str(key), allowed)
                self.fail(data.key_lines[key], _join(path, str(key)), f"unknown key{hint}")

    def phi_tables(self, data: LocatedMap) -> tuple[str, ...]:
        items = self.string_list(data, "phi_tables", "phi_tables", allow_empty=True) or ()
        lines = data["phi_tables"].item_lines if "phi_tables" in data else []
        for index, item in enumerate(items):
            try:
                parse_pattern(item)
            except ValueError as e:
                self.fail(lines[index], f"phi_tables[{index}]", str(e), cause=e)
        return items

    def rules(self, data: LocatedMap) -> tuple[Rule, ...]:
        rules = data["rules"]
        if rules is None:
            return ()
        if not isinstance(rules, LocatedList):
            self.fail(data.key_lines["rules"], "rules", "expected a list of rules")
        names: dict[str, int] = {}
        out = []
        for index, item in enumerate(rules):
            path, line = f"rules[{index}]", rules.item_lines[index]
            if not isinstance(item, LocatedMap):
                self.fail(line, path, "expected a mapping (a rule)")
            rule = _RuleBuilder(self, item, path).build()
            if rule.name in names:
                self.fail(item.key_lines["name"], f"{path}.name",
                          f"duplicate rule name {rule.name!r} (first on line {names[rule.name]})")
            names[rule.name] = item.key_lines["name"]
            out.append(rule)
        return tuple(out)

    # typed field readers: each returns the default when the key is absent

    def value_line(self, data: LocatedMap, key: str) -> int:
        value = data.get(key)
        return getattr(value, "line", 0) or data.key_lines.get(key, data.line)

    def boolean(self, data: LocatedMap, key: str, path: str, *, default: bool) -> bool:
        if key not in data:
            return default
        if not isinstance(data[key], bool):
            self.fail(data.key_lines[key], path, f"expected true or false, got {data[key]!r}")
        return bool(data[key])

    def positive_int(self, data: LocatedMap, key: str, path: str) -> int | None:
        if key not in data:
            return None
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.fail(data.key_lines[key], path, f"expected a positive integer, got {value!r}")
        return value

    def string(self, data: LocatedMap, key: str, path: str) -> str | None:
        if key not in data:
            return None
        if not isinstance(data[key], str) or not data[key].strip():
            self.fail(data.key_lines[key], path, f"expected a non-empty string, got {data[key]!r}")
        return str(data[key]).strip()

    def string_list(self, data: LocatedMap, key: str, path: str, *,
                    allow_empty: bool = False) -> tuple[str, ...] | None:
        if key not in data:
            return None
        value = data[key]
        if not isinstance(value, LocatedList):
            self.fail(data.key_lines[key], path, f"expected a list, got {value!r}")
        if not value and not allow_empty:
            self.fail(data.key_lines[key], path,
                      "empty list matches nothing; leave the key out to match everything")
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.fail(value.item_lines[index], f"{path}[{index}]",
                          f"expected a non-empty string, got {item!r}")
        return tuple(item.strip() for item in value)


class _RuleBuilder:
    """Validates one rule mapping."""

    def __init__(self, v: _Validator, data: LocatedMap, path: str) -> None:
        self.v, self.data, self.path = v, data, path

    def key(self, name: str) -> str:
        return f"{self.path}.{name}"

    def line(self, name: str) -> int:
        return self.data.key_lines.get(name, self.data.line)

    def build(self) -> Rule:
        v, data = self.v, self.data
        v.check_keys(data, self.path, RULE_KEYS)
        name = v.string(data, "name", self.key("name"))
        if name is None:
            v.fail(data.line, self.key("name"), "every rule needs a name")
        if not _NAME.match(name):
            v.fail(self.line("name"), self.key("name"),
                   f"{name!r}: use letters, digits, '-', '_', '.' and ':'")
        allow = self.items("allow", ALLOW_ITEMS)
        deny = self.items("deny", DENY_ITEMS)
        rule = Rule(
            name=name,
            source=f"{v.source}:{data.line}",
            allow=allow,
            deny=deny,
            users=self.name_set("users"),
            groups=self.name_set("groups"),
            databases=self.name_set("databases"),
            clients=self.clients(),
            hours=self.hours(),
            days=self.days(),
            timezone=self.timezone(),
            require_reason=v.boolean(data, "require_reason", self.key("require_reason"),
                                     default=False),
            phi=self.phi(),
            max_rows=v.positive_int(data, "max_rows", self.key("max_rows")),
            max_phi_rows_per_hour=v.positive_int(data, "max_phi_rows_per_hour",
                                                 self.key("max_phi_rows_per_hour")),
            max_bytes=self.size("max_bytes"),
            max_phi_bytes_per_hour=self.size("max_phi_bytes_per_hour"),
            alert=v.boolean(data, "alert", self.key("alert"), default=False),
            description=v.string(data, "description", self.key("description")),
            approval=(parse_approval(v, data["requires_approval"], self.line("requires_approval"),
                                     self.key("requires_approval"))
                      if "requires_approval" in data else None),
        )
        self.check_consistency(rule)
        return rule

    def check_consistency(self, rule: Rule) -> None:
        if not rule.allow and not rule.deny and rule.phi == "allow":
            self.v.fail(self.data.line, self.path, "rule allows and denies nothing "
                        "(give allow, deny or phi: deny)")
        both = rule.allow & rule.deny
        if both:
            self.v.fail(self.line("deny"), self.key("deny"),
                        f"{sorted(both)[0]!r} is both allowed and denied by this rule")
        for key in ("require_reason", "max_rows", "max_phi_rows_per_hour", "max_bytes",
                    "max_phi_bytes_per_hour", "requires_approval"):
            if key in self.data and not rule.allow:
                self.v.fail(self.line(key), self.key(key),
                            "only has an effect on a rule that allows something")

    def items(self, key: str, allowed: frozenset[str]) -> frozenset[str]:
        values = self.v.string_list(self.data, key, self.key(key)) or ()
        for index, item in enumerate(values):
            if item == BULK_EXPORT and key == "allow":
                self.v.fail(self.data[key].item_lines[index], f"{self.key(key)}[{index}]",
                            "bulk_export is a condition that can only be denied")
            if item not in allowed:
                self.v.fail(self.data[key].item_lines[index], f"{self.key(key)}[{index}]",
                            f"unknown class {item!r}{_suggest(item, allowed)}")
        return frozenset(values)

    def size(self, key: str) -> int | None:
        if key not in self.data:
            return None
        try:
            return parse_size(self.data[key])
        except ValueError as e:
            self.v.fail(self.line(key), self.key(key), str(e), cause=e)

    def name_set(self, key: str) -> frozenset[str] | None:
        values = self.v.string_list(self.data, key, self.key(key))
        return None if values is None else frozenset(values)

    def clients(self) -> tuple[Network, ...] | None:
        values = self.v.string_list(self.data, "clients", self.key("clients"))
        if values is None:
            return None
        out = []
        for index, item in enumerate(values):
            try:
                out.append(ipaddress.ip_network(item, strict=True))
            except ValueError as e:
                self.v.fail(self.data["clients"].item_lines[index],
                            f"{self.key('clients')}[{index}]", f"bad CIDR {item!r}: {e}", cause=e)
        return tuple(out)

    def hours(self) -> TimeWindow | None:
        text = self.v.string(self.data, "hours", self.key("hours"))
        if text is None:
            return None
        match = _WINDOW.match(text)
        bad = f"bad time window {text!r}: expected HH:MM-HH:MM, e.g. \"07:00-19:00\""
        if not match:
            self.v.fail(self.line("hours"), self.key("hours"), bad)
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
            self.v.fail(self.line("hours"), self.key("hours"), bad)
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start == end % 1440:
            self.v.fail(self.line("hours"), self.key("hours"),
                        f"bad time window {text!r}: start and end are the same")
        return TimeWindow(start=start, end=end, text=text)

    def days(self) -> frozenset[int] | None:
        values = self.v.string_list(self.data, "days", self.key("days"))
        if values is None:
            return None
        out = set()
        for index, item in enumerate(values):
            word = item.lower()
            if word in DAY_NAMES:
                out.add(DAY_NAMES.index(word))
            elif word in _FULL_DAYS:
                out.add(_FULL_DAYS.index(word))
            else:
                self.v.fail(self.data["days"].item_lines[index], f"{self.key('days')}[{index}]",
                            f"bad day name {item!r}: use mon, tue, wed, thu, fri, sat, sun")
        return frozenset(out)

    def timezone(self) -> ZoneInfo:
        name = self.v.string(self.data, "timezone", self.key("timezone"))
        if name is None:
            return ZoneInfo("UTC")
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError) as e:
            self.v.fail(self.line("timezone"), self.key("timezone"),
                        f"unknown time zone {name!r}", cause=e)

    def phi(self) -> PhiAccess:
        value = self.data.get("phi", "allow")
        if value in ("allow", "masked"):
            return "masked" if value == "masked" else "allow"
        if value != "deny":
            self.v.fail(self.line("phi"), self.key("phi"),
                        f"expected allow, deny or masked, got {value!r}")
        return "deny"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
