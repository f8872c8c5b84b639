"""Policy test cases (``phigate policy test``): YAML text of cases in, pass/fail results out.

A cases file lists statements with who runs them and the expected decision and rule::

    defaults: {database: clinic, now: "2024-06-04T10:00:00-04:00"}
    users: {alice: [clinicians]}          # identity → groups, used when a case gives none
    cases:
      - name: clinician reads one patient
        user: alice
        sql: SELECT * FROM patients WHERE id = 1
        expect: allow
        rule: clinicians-read-phi

Case keys: name, user, groups, database, ip, reason, now, phi_rows_last_hour,
phi_bytes_last_hour, views (view → tables it reads), functions (user function → its
``language``, ``body`` and ``kind``: the catalog the gateway reads from ``pg_proc``; without
it function bodies are not followed), sql, expect (allow | deny), rule (must be among the
decision's rules), verdict (allow | deny, for dry-run files), masked (output column → its
strategy, ``refused``, ``redacted`` or ``clear``, as ``policies.masking_preview`` sees it). The
caller reads the file and supplies the engine, the gateway's identity → groups mapping and the
default time; nothing here does I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from policies.context import RequestContext
from policies.engine import Engine
from policies.functions import Row, build_functions
from policies.loader import PolicyError, parse_yaml
from policies.masking_preview import preview
from policies.model import Action, Decision
from policies.yamlsource import item_line, key_line

TOP_KEYS = frozenset({"defaults", "users", "cases"})
DEFAULT_KEYS = frozenset({"database", "now", "ip", "reason"})
CASE_KEYS = frozenset(
    {"name", "user", "groups", "database", "ip", "reason", "now", "phi_rows_last_hour",
     "phi_bytes_last_hour", "views", "functions", "sql", "expect", "rule", "verdict",
     "masked"}
)


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    line: int
    user: str
    sql: str
    expect: Action
    database: str | None = None
    rule: str | None = None
    verdict: Action | None = None
    groups: frozenset[str] | None = None  # None: look the user up
    ip: str | None = None
    reason: str | None = None
    now: dt.datetime | None = None
    phi_rows_last_hour: int = 0
    phi_bytes_last_hour: int = 0
    views: Mapping[str, frozenset[str]] = field(default_factory=dict)
    masked: Mapping[str, str] | None = None  # output column → strategy/refused/redacted/clear
    functions: tuple[Row, ...] | None = None  # rows of policies.functions.FUNCTIONS_SQL


@dataclass(frozen=True, slots=True)
class CaseFile:
    source: str
    cases: tuple[Case, ...]
    users: Mapping[str, frozenset[str]]


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: Case
    decision: Decision
    passed: bool
    problem: str | None = None


def load_cases(text: str, source: str) -> CaseFile:
    """Parse and validate a cases file. Raises ``PolicyError`` (file:line: key: message)."""
    data = parse_yaml(text, source)
    reader = _Reader(source)
    if not isinstance(data, dict):
        reader.fail(1, "", "a cases file is a mapping with a `cases` list")
    reader.keys(data, "", TOP_KEYS)
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        reader.fail(key_line(data, "defaults"), "defaults", "expected a mapping")
    reader.keys(defaults, "defaults", DEFAULT_KEYS)
    cases = data.get("cases")
    if not isinstance(cases, list) or not cases:
        reader.fail(key_line(data, "cases", 1), "cases", "expected a non-empty list of cases")
    users = reader.users(data.get("users") or {})
    out = tuple(reader.case(item, index, item_line(cases, index) or 1, defaults)
                for index, item in enumerate(cases))
    return CaseFile(source=source, cases=out, users=users)


def run_cases(
    engine: Engine,
    cases: CaseFile,
    *,
    now: dt.datetime,
    users: Mapping[str, frozenset[str]] | None = None,
) -> tuple[CaseResult, ...]:
    """Decide every case. Groups: the case's own, else ``users`` (the gateway config's), else
    the file's ``users`` section. ``now`` is used by cases that give no time."""
    return tuple(_run(engine, case, now, users or {}, cases.users) for case in cases.cases)


def _run(engine: Engine, case: Case, now: dt.datetime, users: Mapping[str, frozenset[str]],
         file_users: Mapping[str, frozenset[str]]) -> CaseResult:
    groups = case.groups
    if groups is None:
        groups = users.get(case.user, file_users.get(case.user, frozenset()))
    ctx = RequestContext(
        identity=case.user, database=case.database or "", now=case.now or now, groups=groups,
        client_ip=case.ip, reason=case.reason, phi_rows_last_hour=case.phi_rows_last_hour,
        phi_bytes_last_hour=case.phi_bytes_last_hour,
        view_dependencies=case.views,
        functions=None if case.functions is None else build_functions(case.functions),
    )
    decision = engine.decide(ctx, case.sql)
    problems = []
    if decision.action != case.expect:
        problems.append(f"expected {case.expect}, got {decision.action}")
    if case.rule is not None and case.rule not in decision.rules:
        problems.append(f"expected rule {case.rule}, got {', '.join(decision.rules) or '-'}")
    if case.verdict is not None and decision.verdict != case.verdict:
        problems.append(f"expected verdict {case.verdict}, got {decision.verdict}")
    if case.masked is not None:
        shown = masked_columns(engine, ctx, case.sql, decision) or {}
        for column, how in case.masked.items():
            if shown.get(column, "clear") != how:
                problems.append(f"expected {column} {how}, got {shown.get(column, 'clear')}")
    return CaseResult(case, decision, not problems, "; ".join(problems) or None)


def masked_columns(engine: Engine, ctx: RequestContext, sql: str,
                   decision: Decision) -> dict[str, str] | None:
    """How each output column would be shown to this identity (None: nothing is masked)."""
    if not decision.allowed:
        return None
    profile = engine.mask_profile(ctx.identity, ctx.groups, ctx.database,
                                  forced=decision.masked)
    return None if profile is None else preview(profile, sql, decision.tables)


def format_results(results: tuple[CaseResult, ...]) -> str:
    """A pass/fail table with a summary line."""
    rows = [("#", "result", "expect", "got", "rules", "case")]
    for index, result in enumerate(results, 1):
        rows.append((str(index), "PASS" if result.passed else "FAIL", result.case.expect,
                     result.decision.action, ",".join(result.decision.rules), result.case.name))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5]
             for row in rows]
    for index, result in enumerate(results, 1):
        if not result.passed:
            lines.append(f"FAIL #{index} (line {result.case.line}) {result.case.name}: "
                         f"{result.problem}; reason: {result.decision.reason}")
    failed = sum(not r.passed for r in results)
    lines.append(f"{len(results) - failed} passed, {failed} failed")
    return "\n".join(lines)


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, line: int | None, key: str, message: str) -> NoReturn:
        raise PolicyError(message, source=self.source, line=line, key=key or None)

    def keys(self, data: Any, path: str, allowed: frozenset[str]) -> None:
        for key in data:
            if key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                self.fail(key_line(data, key), where, f"unknown key (expected {sorted(allowed)})")

    def users(self, data: Any) -> dict[str, frozenset[str]]:
        if not isinstance(data, dict):
            self.fail(1, "users", "expected a mapping of user → list of groups")
        out = {}
        for user, groups in data.items():
            if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
                self.fail(key_line(data, user), f"users.{user}", "expected a list of group names")
            out[str(user)] = frozenset(groups)
        return out

    def case(self, item: Any, index: int, line: int, defaults: Mapping[str, Any]) -> Case:
        path = f"cases[{index}]"
        if not isinstance(item, dict):
            self.fail(line, path, "expected a mapping")
        self.keys(item, path, CASE_KEYS)
        merged = {**defaults, **item}
        for key in ("user", "sql", "expect"):
            if not isinstance(merged.get(key), str) or not merged[key].strip():
                self.fail(line, f"{path}.{key}", "required (a non-empty string)")
        for key in ("expect", "verdict"):
            if key in merged and merged[key] not in ("allow", "deny"):
                self.fail(key_line(item, key, line), f"{path}.{key}", "expected allow or deny")
        groups = merged.get("groups")
        if groups is not None and not (isinstance(groups, list) and
                                       all(isinstance(g, str) for g in groups)):
            self.fail(key_line(item, "groups", line), f"{path}.groups",
                      "expected a list of group names")
        return Case(
            name=str(merged.get("name") or merged["sql"])[:80], line=line, user=merged["user"],
            sql=merged["sql"], expect=merged["expect"], database=merged.get("database"),
            rule=merged.get("rule"), verdict=merged.get("verdict"),
            groups=None if groups is None else frozenset(groups), ip=merged.get("ip"),
            reason=merged.get("reason"), now=self.moment(merged.get("now"), item, path, line),
            phi_rows_last_hour=int(merged.get("phi_rows_last_hour") or 0),
            phi_bytes_last_hour=int(merged.get("phi_bytes_last_hour") or 0),
            views={str(k): frozenset(v) for k, v in (merged.get("views") or {}).items()},
            masked=self.masked(item, path, line),
            functions=self.functions(item, path, line),
        )

    def functions(self, item: Any, path: str, line: int) -> tuple[Row, ...] | None:
        value = item.get("functions")
        if value is None:
            return None
        where = key_line(item, "functions", line)
        if not isinstance(value, dict):
            self.fail(where, f"{path}.functions", "expected a mapping of function name to "
                      "{language, body, kind}")
        rows: list[Row] = []
        for name, facts in value.items():
            key = f"{path}.functions.{name}"
            if not isinstance(facts, dict) or not isinstance(facts.get("language"), str) or \
                    not set(facts) <= {"language", "body", "kind"}:
                self.fail(key_line(value, name, where), key,
                          "expected {language: sql|plpgsql|..., body: text, kind: f|a|w|p}")
            kind = str(facts.get("kind", "f"))
            if kind not in ("f", "a", "w", "p"):
                self.fail(key_line(value, name, where), f"{key}.kind", "expected f, a, w or p")
            schema, _, bare = str(name).rpartition(".")
            rows.append(("f", schema or "public", bare, kind, facts["language"],
                         str(facts.get("body", ""))))
        return tuple(rows)

    def masked(self, item: Any, path: str, line: int) -> dict[str, str] | None:
        value = item.get("masked")
        if value is None:
            return None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            self.fail(key_line(item, "masked", line), f"{path}.masked",
                      "expected a mapping of output column to strategy, refused, redacted "
                      "or clear")
        return {str(k): v for k, v in value.items()}

    def moment(self, value: Any, item: Any, path: str, line: int) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value)
            except ValueError:
                value = None
        if not isinstance(value, dt.datetime) or value.utcoffset() is None:
            self.fail(key_line(item, "now", line), f"{path}.now",
                      "expected an ISO date-time with a UTC offset, e.g. 2024-06-04T10:00:00-04:00")
        return value
