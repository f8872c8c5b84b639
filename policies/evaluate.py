"""One statement against one rule book: deny overrides allow, and no allow means deny.

A rule *applies* when its identity, database, client and time conditions hold. A statement is
allowed when, for each of its classes (and for ``dangerous`` if it is dangerous), some applying
rule allows it — with the session reason it requires, without ``phi: deny`` when PHI is touched,
and with PHI row budget left — and no applying rule denies one of its classes, ``dangerous``,
``bulk_export``, or (``phi: deny``) its PHI tables. ``policies.engine`` drives this per statement.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from policies.calls import Reach, reach, scalar_user_function
from policies.context import RequestContext
from policies.marks import RELABELS, protected, stripped
from policies.model import (
    BULK_EXPORT,
    DANGEROUS,
    DANGEROUS_RULE,
    DEFAULT_DENY,
    Decision,
    Rule,
    minute_of_day,
)
from policies.phi import PhiMatcher
from policies.sizes import derived_max_bytes
from policies.statement import Collapse, Statement
from policies.steps import Steps
from policies.systemviews import system_phi


@dataclass(frozen=True, slots=True)
class RuleBook:
    """The rules and PHI patterns of the policy files that take part in a decision."""

    rules: tuple[Rule, ...]
    phi: PhiMatcher
    loaded: bool  # False: no policy file at all, so everything is denied


@functools.lru_cache(maxsize=1024)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    return address


def applies(rule: Rule, ctx: RequestContext) -> bool:
    """Identity (users OR groups), database, client address and time conditions."""
    if rule.users is not None or rule.groups is not None:
        in_users = rule.users is not None and ctx.identity in rule.users
        in_groups = rule.groups is not None and not rule.groups.isdisjoint(ctx.groups)
        if not (in_users or in_groups):
            return False
    if rule.databases is not None and ctx.database not in rule.databases:
        return False
    if rule.clients is not None and not _client_matches(rule, ctx):
        return False
    if rule.hours is not None or rule.days is not None:
        local = ctx.now.astimezone(rule.timezone)
        if rule.days is not None and local.weekday() not in rule.days:
            return False
        if rule.hours is not None and not rule.hours.contains(minute_of_day(local)):
            return False
    return True


def _client_matches(rule: Rule, ctx: RequestContext) -> bool:
    ip = ctx.client_ip
    address = _address(ip) if isinstance(ip, str) else ip
    if address is None or rule.clients is None:
        return False  # a Unix-socket client has no address to match
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in rule.clients)


def evaluate(book: RuleBook, ctx: RequestContext, stmt: Statement,
             steps: Steps | None = None) -> Decision:
    """Decide one resolved statement (EXECUTE/FETCH already replaced by what they run).

    ``steps`` bounds the walks over view dependencies (raises ``StepsExceeded``)."""
    steps = steps if steps is not None else Steps()
    if not book.loaded:
        return _Facts(stmt, [], [], None).deny(
            (DEFAULT_DENY,), "phigate: rule default-deny: no policy is loaded, so every "
            "statement is denied", "ask an administrator to configure policies")
    # Its own budget of the same size, so the PHI walk's budget keeps meaning what it says.
    reached = reach(ctx.functions, stmt, ctx.view_dependencies, Steps(steps.limit)) \
        if ctx.functions is not None else Reach()
    if reached.dangerous:
        stmt = dataclasses.replace(stmt, dangerous=stmt.dangerous + tuple(reached.dangerous))
    phi = book.phi.touched(ctx.database, stmt.tables, ctx.view_dependencies, steps)
    by_functions = _function_phi(book.phi, ctx, reached, steps)
    relabelled = stripped(book.phi, ctx, stmt, steps) if stmt.relabels else {}
    for name in system_phi(book.phi, ctx.database, stmt, ctx.view_dependencies, steps) + \
            by_functions + [n for names in relabelled.values() for n in names]:
        if name not in phi:
            phi.append(name)
    matching = [rule for rule in book.rules if applies(rule, ctx)]
    allowing, missing, blocked = _allowers(matching, ctx, stmt, phi)
    max_rows = min((r.max_rows for r in allowing if r.max_rows is not None), default=None)
    exported, via = _exported(book.phi, ctx, stmt, max_rows, phi, steps)
    _function_exports(book.phi, ctx, reached, steps, exported, via)
    if phi and (stmt.writes or reached.writes):  # only what writes and touches PHI copies
        _copy_exports(book.phi, ctx, stmt, reached, steps, exported, via)
    for words, names in relabelled.items():  # DDL that leaves PHI under a name of no PHI
        exported += [n for n in names if n not in exported]
        via.append(words)
    through = _through(reached, by_functions)
    denials = [(r, what) for r in matching
               if (what := _denial(r, stmt, phi, exported, via, through))]
    facts = _Facts(stmt, phi, exported, max_rows, via)
    facts.widths = ctx.row_widths
    facts.weight = _row_weight(book.phi, ctx, stmt, steps) if phi else 1
    if denials:
        return facts.denied_by_rules(denials)
    if DANGEROUS in missing:
        return facts.deny((DANGEROUS_RULE,), f"phigate: rule dangerous: {stmt.dangerous[0]}; "
                          "no rule allows dangerous statements for you",
                          "a rule must list `dangerous` under allow", alert=True)
    if missing:
        return facts.denied_by_default(ctx, missing, blocked, matching, book.rules)
    return facts.allowed(allowing)


def _allowers(
    matching: Sequence[Rule], ctx: RequestContext, stmt: Statement, phi: list[str]
) -> tuple[list[Rule], list[str], dict[str, str]]:
    """(rules that allow, items nobody allows, rule name → why it could not allow)."""
    needed = sorted(stmt.classes or {"select"})
    if stmt.dangerous:
        needed.append(DANGEROUS)
    allowing: dict[str, Rule] = {}
    missing: list[str] = []
    blocked: dict[str, str] = {}
    for item in needed:
        covered = False
        for rule in matching:
            if not rule.allows(item):
                continue
            why = _blocker(rule, ctx, phi)
            if why:
                blocked[rule.name] = why
                continue
            allowing[rule.name] = rule
            covered = True
        if not covered:
            missing.append(item)
    return list(allowing.values()), missing, blocked


def _blocker(rule: Rule, ctx: RequestContext, phi: list[str]) -> str | None:
    if rule.approval is not None and rule.name not in ctx.grants:
        return (f"requires an approved access request: phigate access request --rule "
                f"{rule.name}")
    if rule.require_reason and not (ctx.reason and ctx.reason.strip()):
        return "requires a reason: SET phigate.reason = '<ticket>'"
    if phi and rule.phi == "deny":
        return "does not allow PHI tables"
    budget = rule.max_phi_rows_per_hour
    if phi and budget is not None and ctx.phi_rows_last_hour >= budget:
        return f"PHI row budget of {budget} rows/hour used up ({ctx.phi_rows_last_hour})"
    byte_budget = rule.max_phi_bytes_per_hour
    if phi and byte_budget is not None and ctx.phi_bytes_last_hour >= byte_budget:
        return (f"PHI byte budget of {byte_budget} bytes/hour used up "
                f"({ctx.phi_bytes_last_hour})")
    return None


def _exported(
    matcher: PhiMatcher, ctx: RequestContext, stmt: Statement, max_rows: int | None,
    phi: list[str], steps: Steps,
) -> tuple[list[str], list[str]]:
    """PHI tables whose rows the statement would export in bulk, and what exports them."""
    if stmt.copy_to:
        return list(phi), ["COPY ... TO"] if phi else []
    out: dict[str, None] = {}
    via: dict[str, None] = {}
    for flow in stmt.exports:
        if flow.limit is not None and (max_rows is None or flow.limit <= max_rows):
            continue
        for name in matcher.touched(ctx.database, (flow.table,), ctx.view_dependencies, steps):
            out[name] = None
            via[f"unfiltered rows ({flow.via})"] = None
    statistics = system_phi(matcher, ctx.database, stmt, ctx.view_dependencies, steps,
                            statistics_only=True)
    if statistics:
        out.update(dict.fromkeys(statistics))
        via["planner statistics (values of every analysed column)"] = None
    tables, constructs = _collapsed(matcher, ctx, stmt.collapses, max_rows, steps)
    out.update(dict.fromkeys(tables))
    via.update(dict.fromkeys(constructs))
    return list(out), list(via)


def _row_weight(matcher: PhiMatcher, ctx: RequestContext, stmt: Statement,
                steps: Steps) -> int:
    """How many PHI sources one result row carries at most (``policies.weights``)."""
    best = 1
    for branch in stmt.row_sources:
        if len(branch) > best:
            phi = sum(1 for source in branch
                      if matcher.touched(ctx.database, source, ctx.view_dependencies, steps))
            best = max(best, phi)
    return best


def _function_phi(matcher: PhiMatcher, ctx: RequestContext, reached: Reach,
                  steps: Steps) -> list[str]:
    """PHI the user functions a statement runs read; every PHI table for an opaque one."""
    if reached.opaque:
        return matcher.every(ctx.database)
    if not reached.relations:
        return []
    return matcher.touched(ctx.database, reached.relations, ctx.view_dependencies, steps)


def _function_exports(matcher: PhiMatcher, ctx: RequestContext, reached: Reach, steps: Steps,
                      exported: list[str], via: list[str]) -> None:
    """A function whose body reads PHI unfiltered or folds it makes its call a bulk export."""
    for relation, function in reached.exports.items():
        names = matcher.touched(ctx.database, (relation,), ctx.view_dependencies, steps)
        if names:
            exported += [n for n in names if n not in exported]
            what = f"function {function} (its body reads {relation} in bulk)"
            if what not in via:
                via.append(what)


def _copy_exports(matcher: PhiMatcher, ctx: RequestContext, stmt: Statement, reached: Reach,
                  steps: Steps, exported: list[str], via: list[str]) -> None:
    """Values of PHI tables written into a relation that is not one: a copy no row limit or
    budget counts (nothing comes back), which afterwards reads as no PHI at all. Whatever the
    filter; the targets are what the statement, its SQL functions' bodies and the rules of the
    tables it writes write into, the sources every relation they read (a DELETE ... USING
    writes no values: it has no target)."""
    written = {w: w.via for w in stmt.writes}
    for target, where in reached.writes.items():
        written.setdefault(target, f"{target.via} in {where}")
    targets = {w: how for w, how in written.items()
               if not protected(matcher, ctx, w, steps)}
    if not targets:
        return
    sources = matcher.touched(ctx.database, (*stmt.tables, *reached.relations),
                              ctx.view_dependencies, steps)
    if not sources:
        return
    exported += [n for n in sources if n not in exported]
    for target, how in targets.items():
        what = f"copy into {target.table}, which is not a PHI table ({how})"
        if what not in via:
            via.append(what)


def _through(reached: Reach, by_functions: list[str]) -> str:
    """Why a statement that names no PHI table touches PHI: the functions it runs."""
    if reached.opaque:
        return f" through {', '.join(reached.opaque)}"
    if not by_functions:
        return ""
    if not reached.readers:
        return " through a rule of the table written"
    return f" through function {', '.join(reached.readers)}"


def _collapsed(
    matcher: PhiMatcher, ctx: RequestContext, collapses: tuple[Collapse, ...],
    max_rows: int | None, steps: Steps,
) -> tuple[list[str], list[str]]:
    """Row-collapsing constructs over PHI: an export unless every PHI row they read is bounded
    and, over the whole statement, the bounds add up to at most ``max_rows``."""
    total, unbounded = 0, False
    tables: dict[str, None] = {}
    constructs: dict[str, None] = {}
    for collapse in collapses:
        if scalar_user_function(ctx.functions, collapse):
            continue  # the catalog says it returns one value per row
        for source in collapse.inputs:
            names = matcher.touched(ctx.database, source.tables, ctx.view_dependencies, steps)
            if not names:
                continue
            tables.update(dict.fromkeys(names))
            constructs[collapse.construct] = None
            if source.limit is None:
                unbounded = True
            else:
                total += source.limit
    if unbounded or (max_rows is not None and total > max_rows):
        return list(tables), list(constructs)
    return [], []


def _denial(rule: Rule, stmt: Statement, phi: list[str], exported: list[str],
            via: list[str], through: str = "") -> str | None:
    if rule.deny:
        for item in sorted(stmt.classes):
            if rule.denies_class(item):
                return item
        if stmt.dangerous and DANGEROUS in rule.deny:
            return f"dangerous statements ({stmt.dangerous[0]})"
        if exported and BULK_EXPORT in rule.deny:
            return f"bulk export of PHI ({', '.join(exported)}) by {'; '.join(via)}"
    if phi and rule.phi == "deny":
        return f"access to PHI tables ({', '.join(phi)}){through}"
    return None


class _Facts:
    """Builds the Decision for one statement once the outcome is known."""

    def __init__(self, stmt: Statement, phi: list[str], exported: list[str],
                 max_rows: int | None, via: list[str] | None = None) -> None:
        self.stmt, self.phi, self.exported, self.max_rows = stmt, phi, exported, max_rows
        self.via = via or []
        self.widths: Mapping[str, int] = {}
        self.weight = 1

    def _make(self, action: str, rules: tuple[str, ...], reason: str, hint: str | None,
              *, alert: bool, max_rows: int | None = None,
              budget: int | None = None) -> Decision:
        stmt = self.stmt
        return Decision(
            action="allow" if action == "allow" else "deny",
            rules=rules,
            reason=reason,
            hint=hint,
            classes=tuple(sorted(stmt.classes)),
            tables=tuple(dict.fromkeys(str(t) for t in stmt.tables)),
            phi_tables=tuple(self.phi),
            max_rows=max_rows if max_rows is None or self.weight == 1
            else max_rows // self.weight,  # a row of N PHI rows counts N
            max_phi_rows_per_hour=budget,
            row_weight=self.weight,
            alert=alert,
            bulk_export=bool(self.exported),
            export_via=tuple(self.via) if self.exported else (),
            dangerous=stmt.is_dangerous,
            statements=(stmt,),
        )

    def deny(self, rules: tuple[str, ...], reason: str, hint: str | None, *,
             alert: bool = False) -> Decision:
        return self._make("deny", rules, reason, hint, alert=alert)

    def allowed(self, allowing: list[Rule]) -> Decision:
        names = tuple(r.name for r in allowing)
        budgets = [r.max_phi_rows_per_hour for r in allowing if r.max_phi_rows_per_hour]
        what = ", ".join(sorted(self.stmt.classes)) or "statement"
        decision = self._make(
            "allow", names, f"phigate: allowed by rule {', '.join(names)} ({what})", None,
            alert=any(r.alert for r in allowing), max_rows=self.max_rows,
            budget=min(budgets, default=None),
        )
        # PHI is shown in clear only when some allowing rule says so; `phi: masked` alone
        # lets the statement run with every identifier masked.
        decision = self._with_bytes(decision, allowing)
        if self.phi and any(r.phi == "masked" for r in allowing) and not any(
                r.phi == "allow" for r in allowing):
            return dataclasses.replace(decision, masked=True)
        return decision

    def _with_bytes(self, decision: Decision, allowing: list[Rule]) -> Decision:
        """Byte limits count only for statements that touch PHI."""
        if not self.phi:
            return decision
        max_bytes = min((r.max_bytes for r in allowing if r.max_bytes), default=None)
        derived = max_bytes is None and self.max_rows is not None
        if derived and self.max_rows is not None:
            max_bytes = derived_max_bytes(self.max_rows, self.phi, self.widths)
        hourly = [r.max_phi_bytes_per_hour for r in allowing if r.max_phi_bytes_per_hour]
        return dataclasses.replace(decision, max_bytes=max_bytes, max_bytes_derived=derived,
                                   max_phi_bytes_per_hour=min(hourly, default=None))

    def denied_by_rules(self, denials: list[tuple[Rule, str]]) -> Decision:
        rule, what = denials[0]
        names = tuple(dict.fromkeys(r.name for r, _ in denials))
        also = f" (also denied by {', '.join(names[1:])})" if len(names) > 1 else ""
        return self.deny(names, f"phigate: rule {rule.name} denies {what}{also}",
                         self._deny_hint(rule, what), alert=any(r.alert for r, _ in denials))

    def _deny_hint(self, rule: Rule, what: str) -> str:
        if what.startswith("bulk export"):
            if self.stmt.copy_to:
                return "COPY of a PHI table is a bulk export; select the rows you need instead"
            if any(v.startswith("planner statistics") for v in self.via):
                return ("pg_stats and pg_statistic hold column values of PHI tables; filter "
                        "them to tables without PHI (WHERE tablename = '...')")
            if any(v.startswith(RELABELS) for v in self.via):
                return ("the policy knows PHI tables by name: list the new name under "
                        "phi_tables first (and reload), or pick one a pattern matches")
            if any(v.startswith("copy into") for v in self.via):
                return ("a copy of PHI reads as no PHI afterwards: write into a PHI table, or "
                        "list the target under phi_tables")
            collapsing = [v for v in self.via if not v.startswith("unfiltered")]
            if collapsing:
                return _collapse_hint(collapsing, self.max_rows)
            bound = f" or a LIMIT of at most {self.max_rows}" if self.max_rows else " or a LIMIT"
            return f"add a WHERE clause that selects the rows you need{bound}"
        if what.startswith("access to PHI"):
            return "this rule forbids PHI tables; query tables that hold no PHI"
        if what.startswith("dangerous"):
            return "server-side file, program and dynamic-SQL functions are not allowed"
        when = rule.when_text()
        return f"{what} is denied by {rule.name}" + (f" during {when}" if when else "")

    def denied_by_default(self, ctx: RequestContext, missing: list[str], blocked: dict[str, str],
                          matching: list[Rule], rules: tuple[Rule, ...]) -> Decision:
        why = "; ".join(f"{name} {text}" for name, text in blocked.items())
        reason = (f"phigate: rule default-deny: no rule allows {', '.join(missing)} for "
                  f"{ctx.identity} on {ctx.database}" + (f" ({why})" if why else ""))
        return self.deny((DEFAULT_DENY, *blocked), reason, _default_hint(ctx, missing, matching,
                                                                          rules, blocked))


def _collapse_hint(constructs: list[str], max_rows: int | None) -> str:
    limit = max_rows if max_rows is not None else 100
    return (f"{constructs[0]} folds every row it reads into one result row; feed it from a "
            f"subquery with a LIMIT (at most {limit} rows in all), e.g. "
            f"FROM (SELECT ... FROM ... WHERE ... LIMIT {limit}) s, or use count/sum/avg/min/max")


def _default_hint(ctx: RequestContext, missing: list[str], matching: list[Rule],
                  rules: tuple[Rule, ...], blocked: dict[str, str]) -> str:
    if any("reason" in text for text in blocked.values()):
        return "set a reason first: SET phigate.reason = '<ticket>' (or PGOPTIONS at connect)"
    for rule in rules:  # a rule for this identity that allows it elsewhere or at another time
        if rule in matching or not any(rule.allows(item) for item in missing):
            continue
        if _for_identity(rule, ctx):
            where = []
            if rule.databases is not None and ctx.database not in rule.databases:
                where.append(f"on {', '.join(sorted(rule.databases))}")
            if rule.when_text():
                where.append(f"during {rule.when_text()}")
            if rule.clients is not None:
                where.append("from " + ", ".join(str(n) for n in rule.clients))
            return f"rule {rule.name} allows it {' '.join(where)}".rstrip()
    granting = [rule for rule in matching if rule.allow]
    allowed = sorted({item for rule in granting for item in rule.allow})
    if allowed:
        return f"you may run: {', '.join(allowed)} ({', '.join(r.name for r in granting)})"
    return "no rule applies to you here; ask an administrator"


def _for_identity(rule: Rule, ctx: RequestContext) -> bool:
    if rule.users is None and rule.groups is None:
        return True
    return bool((rule.users and ctx.identity in rule.users) or
                (rule.groups and not rule.groups.isdisjoint(ctx.groups)))
