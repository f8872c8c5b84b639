"""The policy engine: a query string and a request context in, a ``Decision`` out.

``Engine(policies)`` is built once per policy load (a reload builds a new one and swaps it in;
the classification cache can be handed over since classifications do not depend on policy).
``decide(ctx, sql)`` classifies through the cache and decides every statement in order — a
PREPARE or DECLARE earlier in the same string is visible to a later EXECUTE or FETCH — and allows
the string only if every statement is allowed. ``decide_classified`` serves the extended
protocol: classify once at Parse, decide with the current context at Bind/Execute.

Policy files with ``enforce: false`` are dry runs: their verdict is reported (``would_deny``)
but only enforced files can block. The engine fails closed: an unexpected exception denies.
Each decision gets a step budget (``policies.steps``); a statement that would exceed it is
refused as too complex (SQLSTATE 54001) rather than decided without bound.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import cast

from policies.cache import ClassificationCache
from policies.catalog_effects import changes_catalog
from policies.classify import classify
from policies.context import RequestContext
from policies.evaluate import RuleBook, evaluate
from policies.loader import PolicyError
from policies.masking import MaskProfile, build_profile
from policies.model import (
    EMPTY_QUERY,
    ENGINE_ERROR,
    GATEWAY_SETTING,
    TOO_COMPLEX,
    UNKNOWN_NAME,
    UNPARSEABLE,
    Decision,
    Policy,
)
from policies.phi import PhiMatcher
from policies.statement import Classification, Statement
from policies.steps import DEFAULT_MAX_STEPS, Steps, StepsExceeded
from policies.views import EARLIER_IN_QUERY, READS_NOTHING, Unsettled


class Engine:
    """Decides statements for one set of loaded policies. Pure apart from its cache."""

    def __init__(self, policies: Iterable[Policy], *,
                 cache: ClassificationCache | None = None,
                 max_steps: int = DEFAULT_MAX_STEPS) -> None:
        self.policies = tuple(policies)
        self.max_steps = max_steps
        _check_unique_names(self.policies)
        enforced = [p for p in self.policies if p.enforce]
        self._enforced = _book(enforced, loaded=bool(enforced) or not self.policies)
        has_dry_run = len(enforced) < len(self.policies)
        self._full = _book(self.policies, loaded=True) if has_dry_run else None
        self._only_dry_run = has_dry_run and not enforced
        self.cache = cache if cache is not None else ClassificationCache()
        # Masking is enforced from enforced files only (a dry-run file cannot mask).
        self.masking = tuple(rule for p in enforced for rule in p.masking)
        self.phi_columns = tuple(c for p in enforced for c in p.phi_columns)
        self.phi_table_patterns = tuple(t for p in enforced for t in p.phi_tables)

    def mask_profile(self, identity: str, groups: frozenset[str], database: str, *,
                     forced: bool = False) -> MaskProfile | None:
        """The masking a session of ``identity`` on ``database`` gets (None: none)."""
        rules = [r for r in self.masking if r.applies(identity, groups, database)]
        return build_profile(rules, database=database, phi_columns=self.phi_columns,
                             phi_tables=self.phi_table_patterns, forced=forced)

    def classify(self, sql: str, *, standard_strings: bool = True) -> Classification:
        """The cached classification; text read with backslash escapes (a session with
        ``standard_conforming_strings`` off) is parsed each time, since the cache's key is the
        text alone and such text can split differently."""
        if not standard_strings and "\\" in sql:
            return classify(sql, standard_strings=False)
        return self.cache.get(sql)

    def decide(self, ctx: RequestContext, sql: str) -> Decision:
        try:
            classification = self.cache.get(sql)
        except Exception as e:  # fail closed: a bug here must never let a statement through
            return _engine_error(e)
        return self.decide_classified(ctx, classification)

    def decide_classified(self, ctx: RequestContext, classification: Classification) -> Decision:
        steps = Steps(self.max_steps)
        try:
            return self._decide(ctx, classification, steps)
        except StepsExceeded as e:
            return _too_complex(e)
        except Exception as e:
            return _engine_error(e)

    def decide_statement(self, ctx: RequestContext, statement: Statement) -> Decision:
        """One already-classified statement (e.g. a Parse'd one) with the current context."""
        steps = Steps(self.max_steps)
        try:
            return self._one(ctx, statement, ctx.prepared, ctx.cursors, steps)
        except StepsExceeded as e:
            return _too_complex(e)
        except Exception as e:
            return _engine_error(e)

    def _decide(self, ctx: RequestContext, classification: Classification,
                steps: Steps) -> Decision:
        if classification.error is not None:
            return Decision("deny", (UNPARSEABLE,),
                            f"phigate: rule unparseable: statement denied ({classification.error})",
                            "only SQL that PostgreSQL's parser accepts is forwarded")
        statements = classification.statements
        if not statements:
            return Decision("allow", (EMPTY_QUERY,), "phigate: empty query")
        if len(statements) == 1:
            return self._one(ctx, statements[0], ctx.prepared, ctx.cursors, steps)
        prepared, cursors = dict(ctx.prepared), dict(ctx.cursors)
        parts = []
        for statement in statements:
            parts.append(self._one(ctx, statement, prepared, cursors, steps))
            ctx = _apply_effect(ctx, statement, prepared, cursors)
            if changes_catalog(statement, ctx.functions) and not isinstance(
                    ctx.view_dependencies, Unsettled):  # what follows is decided before it ran
                views = cast(Mapping[str, frozenset[str]], ctx.view_dependencies)
                ctx = dataclasses.replace(ctx, view_dependencies=Unsettled(
                    views, EARLIER_IN_QUERY))
        return _combine(parts, statements)

    def _one(self, ctx: RequestContext, stmt: Statement, prepared: Mapping[str, Statement],
             cursors: Mapping[str, Statement], steps: Steps) -> Decision:
        effect = stmt.effect
        if effect is not None and effect.kind in ("set_reason", "reset_reason"):
            return Decision("allow", (GATEWAY_SETTING,), "phigate: session reason recorded by the "
                            "gateway (not forwarded)", classes=("session",), statements=(stmt,))
        resolved = _resolve(stmt, prepared, cursors)
        if isinstance(resolved, Decision):
            return resolved
        views = ctx.view_dependencies
        if not isinstance(views, Unsettled):
            return self._evaluate(ctx, resolved, steps)
        if READS_NOTHING.issuperset(resolved.classes):  # e.g. CREATE VIEW: nothing read yet
            return self._evaluate(dataclasses.replace(ctx, view_dependencies=views.views),
                                  resolved, steps)
        decision = self._evaluate(ctx, resolved, steps)
        if decision.phi_tables:
            decision = dataclasses.replace(decision, reason=decision.reason + views.note())
        return decision

    def _evaluate(self, ctx: RequestContext, resolved: Statement, steps: Steps) -> Decision:
        enforced = evaluate(self._enforced, ctx, resolved, steps)
        if self._full is None:
            return enforced
        trial = evaluate(self._full, ctx, resolved, steps)
        return _dry_run(None if self._only_dry_run else enforced, trial)


def _book(policies: Iterable[Policy], *, loaded: bool) -> RuleBook:
    policies = tuple(policies)
    rules = tuple(rule for policy in policies for rule in policy.rules)
    patterns = (pattern for policy in policies for pattern in policy.phi_tables)
    return RuleBook(rules=rules, phi=PhiMatcher(patterns), loaded=loaded and bool(policies))


def _check_unique_names(policies: tuple[Policy, ...]) -> None:
    seen: dict[str, str] = {}
    for policy in policies:
        for rule in policy.rules:
            if rule.name in seen:
                raise PolicyError(f"rule name {rule.name!r} already used at {seen[rule.name]}",
                                  source=policy.source, key="name")
            seen[rule.name] = rule.source


def _resolve(stmt: Statement, prepared: Mapping[str, Statement],
             cursors: Mapping[str, Statement]) -> Statement | Decision:
    """EXECUTE/FETCH → the statement they really run, merged with what they add themselves."""
    if stmt.executes is not None:
        target = prepared.get(stmt.executes)
        kind = "prepared statement"
    elif stmt.fetches is not None:
        target = cursors.get(stmt.fetches)
        kind = "cursor"
    else:
        return stmt
    name = stmt.executes if stmt.executes is not None else stmt.fetches
    if target is None:
        return Decision("deny", (UNKNOWN_NAME,), f"phigate: rule unknown-name: {kind} {name!r} "
                        "was not created through the gateway; denied",
                        f"create the {kind} in this session through the gateway first",
                        statements=(stmt,))
    explain = stmt.explain_only
    return dataclasses.replace(
        stmt,
        classes=stmt.classes if explain else stmt.classes | target.classes,
        tables=tuple(dict.fromkeys(stmt.tables + target.tables)),
        functions=tuple(dict.fromkeys(stmt.functions + target.functions)),
        operators=tuple(dict.fromkeys(stmt.operators + target.operators)),
        casts=tuple(dict.fromkeys(stmt.casts + target.casts)),
        dangerous=tuple(dict.fromkeys(stmt.dangerous + target.dangerous)),
        exports=() if explain else target.exports,
        writes=() if explain else tuple(dict.fromkeys(stmt.writes + target.writes)),
        collapses=() if explain else target.collapses,
        row_sources=() if explain else target.row_sources,
        system_reads=() if explain else tuple(dict.fromkeys(stmt.system_reads
                                                            + target.system_reads)),
        shape=None if explain else target.shape,
        copy_to=not explain and target.copy_to,
        executes=None,
        fetches=None,
    )


def _apply_effect(ctx: RequestContext, stmt: Statement, prepared: dict[str, Statement],
                  cursors: dict[str, Statement]) -> RequestContext:
    """Session effects of one statement, seen by the later statements of the same string."""
    effect = stmt.effect
    if effect is None:
        return ctx
    if effect.kind == "prepare" and effect.name is not None and effect.statement is not None:
        prepared[effect.name] = effect.statement
    elif effect.kind == "declare" and effect.name is not None and effect.statement is not None:
        cursors[effect.name] = effect.statement
    elif effect.kind == "deallocate":
        _forget(prepared, effect.name)
    elif effect.kind == "close":
        _forget(cursors, effect.name)
    elif effect.kind == "discard_all":
        prepared.clear()
        cursors.clear()
    elif effect.kind in ("set_reason", "reset_reason"):
        return dataclasses.replace(ctx, reason=effect.value)
    return ctx


def _forget(names: dict[str, Statement], name: str | None) -> None:
    if name is None:
        names.clear()
    else:
        names.pop(name, None)


def _dry_run(enforced: Decision | None, trial: Decision) -> Decision:
    if enforced is not None and enforced.action == "deny":
        return enforced
    if trial.action == "deny":
        text = trial.reason.removeprefix("phigate: ")
        return dataclasses.replace(
            trial, action="allow", would_deny=True, enforce=False, alert=True,
            reason=f"phigate: dry run, not enforced: {text}",
            max_rows=enforced.max_rows if enforced is not None else None,
            max_bytes=enforced.max_bytes if enforced is not None else None,
        )
    if enforced is None:
        return dataclasses.replace(trial, enforce=False, max_rows=None, max_bytes=None)
    return enforced


def _combine(parts: list[Decision], statements: tuple[Statement, ...]) -> Decision:
    """Several statements: allowed only if all are; the first denial explains."""
    denied = [(i, p) for i, p in enumerate(parts, 1) if p.action == "deny"]
    would = [(i, p) for i, p in enumerate(parts, 1) if p.verdict == "deny"]
    first = denied[0] if denied else would[0] if would else None
    n = len(parts)
    if first is not None:
        index, part = first
        rules = tuple(dict.fromkeys(r for _, p in (denied or would) for r in p.rules))
        reason = f"{part.reason} (statement {index} of {n})"
        hint = part.hint
    else:
        rules = tuple(dict.fromkeys(r for p in parts for r in p.rules))
        reason, hint = f"phigate: all {n} statements allowed", None
    caps = [p.max_rows for p in parts if p.max_rows is not None]
    weight = max((p.row_weight for p in parts), default=1)
    budgets = [p.max_phi_rows_per_hour for p in parts if p.max_phi_rows_per_hour is not None]
    sizes = [p for p in parts if p.max_bytes is not None]
    smallest = min(sizes, key=lambda p: p.max_bytes or 0, default=None)
    hourly = [p.max_phi_bytes_per_hour for p in parts if p.max_phi_bytes_per_hour is not None]
    return Decision(
        action="deny" if denied else "allow",
        rules=rules,
        reason=reason,
        hint=hint,
        classes=tuple(sorted({c for p in parts for c in p.classes})),
        tables=tuple(dict.fromkeys(t for p in parts for t in p.tables)),
        phi_tables=tuple(dict.fromkeys(t for p in parts for t in p.phi_tables)),
        max_rows=min(caps, default=None),
        row_weight=weight,
        max_phi_rows_per_hour=min(budgets, default=None),
        max_bytes=smallest.max_bytes if smallest is not None else None,
        max_bytes_derived=smallest.max_bytes_derived if smallest is not None else False,
        max_phi_bytes_per_hour=min(hourly, default=None),
        alert=any(p.alert for p in parts),
        enforce=all(p.enforce for p in parts),
        would_deny=bool(would) and not denied,
        bulk_export=any(p.bulk_export for p in parts),
        export_via=tuple(dict.fromkeys(v for p in parts for v in p.export_via)),
        dangerous=any(p.dangerous for p in parts),
        masked=any(p.masked for p in parts),
        statements=statements,
        parts=tuple(parts),
    )


def _engine_error(error: Exception) -> Decision:
    return Decision("deny", (ENGINE_ERROR,),
                    f"phigate: rule engine-error: the policy engine failed "
                    f"({type(error).__name__}); denied", "report this to the administrator")


def _too_complex(error: StepsExceeded) -> Decision:
    return Decision("deny", (TOO_COMPLEX,),
                    f"phigate: rule too-complex: deciding this statement needs {error}: the "
                    "relations it reads (views of views, partitions) are too many to follow; "
                    "refused", "read the underlying tables, or ask the administrator to raise "
                    "limits.policy_steps")
