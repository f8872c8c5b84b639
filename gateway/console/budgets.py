"""A person's PHI budgets, from the policy files the config names: the hourly limits
(``max_phi_rows_per_hour``, ``max_phi_bytes_per_hour``) of every rule that names them or
one of their groups (or names nobody: it applies to everyone). The people pages show them
against what the person read. The files are read the way ``phigate policy check`` reads
them; one that cannot be read gives no budgets and says why. Driven by ``pages``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from policies.loader import PolicyError, load_policies
from policies.model import Rule


@dataclass(frozen=True, slots=True)
class Budget:
    rule: str
    rows_per_hour: int | None
    bytes_per_hour: int | None


def load_rules(files: tuple[Path, ...]) -> tuple[tuple[Rule, ...], str | None]:
    """(every rule, why they could not be read or None)."""
    try:
        policies = load_policies((path.read_text(encoding="utf-8"), str(path))
                                 for path in files)
    except (OSError, UnicodeDecodeError, PolicyError) as e:
        return (), f"the policies cannot be read: {e}"
    return tuple(rule for policy in policies for rule in policy.rules), None


def budgets_of(rules: tuple[Rule, ...], identity: str, groups: frozenset[str]
               ) -> list[Budget]:
    found = []
    for rule in rules:
        if rule.max_phi_rows_per_hour is None and rule.max_phi_bytes_per_hour is None:
            continue
        named = rule.users is not None or rule.groups is not None
        if named and not ((rule.users is not None and identity in rule.users) or
                          (rule.groups is not None and not rule.groups.isdisjoint(groups))):
            continue
        found.append(Budget(rule.name, rule.max_phi_rows_per_hour,
                            rule.max_phi_bytes_per_hour))
    return found
