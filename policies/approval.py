"""The ``requires_approval`` rule key: a rule that allows only under an approved request.

``parse_approval`` is called by ``policies/loader.py`` for a rule's ``requires_approval:``
mapping. The engine treats such a rule as allowing nothing unless the request context
names it in ``grants`` (the gateway's access wing, ``gateway/access``, supplies the rule
names the person holds an active grant for).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from policies.yamlsource import LocatedMap

APPROVAL_KEYS = frozenset({"approvers", "max_duration", "min_approvals"})
DEFAULT_MAX_DURATION_S = 4 * 3600.0
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class Approval:
    approvers: frozenset[str]  # user names or group names
    max_duration_s: float = DEFAULT_MAX_DURATION_S
    min_approvals: int = 1

    def may_approve(self, identity: str, groups: frozenset[str]) -> bool:
        return identity in self.approvers or not self.approvers.isdisjoint(groups)


class _Reader(Protocol):
    def fail(self, line: int | None, key: str, message: str, *,
             cause: Exception | None = None) -> None: ...

    def check_keys(self, data: LocatedMap, path: str, allowed: frozenset[str]) -> None: ...

    def string_list(self, data: LocatedMap, key: str, path: str, *,
                    allow_empty: bool = False) -> tuple[str, ...] | None: ...

    def positive_int(self, data: LocatedMap, key: str, path: str) -> int | None: ...


def parse_duration(text: object) -> float | None:
    """``30m``, ``2h``, ``1d`` → seconds; None if it is not such a duration."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    return float(int(match.group(1)) * _UNITS[match.group(2)]) if match else None


def parse_approval(v: _Reader, data: object, line: int, path: str) -> Approval:
    if not isinstance(data, LocatedMap):
        v.fail(line, path, "expected a mapping {approvers: [...], max_duration, min_approvals}")
        raise AssertionError  # fail() raises
    v.check_keys(data, path, APPROVAL_KEYS)
    approvers = v.string_list(data, "approvers", f"{path}.approvers")
    if not approvers:
        v.fail(data.line, f"{path}.approvers", "name the users or groups who may approve")
        raise AssertionError
    max_duration = DEFAULT_MAX_DURATION_S
    if "max_duration" in data:
        parsed = parse_duration(data["max_duration"])
        if parsed is None or parsed <= 0:
            v.fail(data.key_lines["max_duration"], f"{path}.max_duration",
                   f"expected a duration such as 30m, 4h or 1d, got {data['max_duration']!r}")
            raise AssertionError
        max_duration = parsed
    min_approvals = v.positive_int(data, "min_approvals", f"{path}.min_approvals") or 1
    return Approval(frozenset(approvers or ()), max_duration, min_approvals)
