"""``phigate access request|list|approve|deny|revoke``: just-in-time access from the shell.

Registered by ``gateway/cli.py``. Each run reads the config (policies, identities, SSO),
authenticates the person (``gateway/access/identity.py``) and changes the shared store;
the gateway journals and alerts from the store's event log. Exit codes: 0 done,
1 refused (not authenticated, not allowed, no such request), 2 usage or configuration.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time

from policies.approval import Approval, parse_duration
from policies.context import RequestContext
from policies.evaluate import applies
from policies.model import Rule

from ..errors import ConfigError
from ..policy.hook import load_engine
from ..settings.config import Settings, load_config
from .identity import NotAuthenticated, Person, identify
from .settings import store_path
from .store import APPROVED, PENDING, AccessError, AccessStore, Request
from .watcher import human_duration

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    access = commands.add_parser("access", help="request, approve and revoke just-in-time "
                                                "access to requires_approval rules")
    actions = access.add_subparsers(dest="action", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", required=True, help="path to phigate.yaml")
    common.add_argument("--user", help="your identity (default: from your SSO token)")
    request = actions.add_parser("request", parents=[common], help="ask for a rule")
    request.add_argument("--rule", required=True)
    request.add_argument("--reason", required=True, help='e.g. "INC-4242: …"')
    request.add_argument("--duration", required=True, help="e.g. 30m, 2h")
    request.set_defaults(func=cmd_request)
    listing = actions.add_parser("list", parents=[common], help="pending and active requests")
    listing.add_argument("--all", action="store_true", help="closed requests too")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)
    for name, func, text in (("approve", cmd_approve, "approve a request"),
                             ("deny", cmd_deny, "deny a request"),
                             ("revoke", cmd_revoke, "end a pending or active grant")):
        action = actions.add_parser(name, parents=[common], help=text)
        action.add_argument("id", metavar="ID")
        action.add_argument("--reason", required=name == "deny", default="")
        action.set_defaults(func=func)


class _Context:
    """The config, the policies' approval rules, the store and the authenticated person."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.settings: Settings = load_config(args.config)
        path = store_path(self.settings.access,
                          self.settings.journal.dir if self.settings.journal else None)
        if path is None:
            raise ConfigError("access requests need a journal or access.store",
                              file=str(self.settings.source), key="access")
        self.rules = {rule.name: rule for policy in load_engine(self.settings.policy_files)
                      .policies for rule in policy.rules if rule.approval is not None}
        self.person: Person = identify(self.settings, args.user)
        self.store = AccessStore(path)

    def approval(self, rule_name: str) -> Approval:
        rule = self.rules.get(rule_name)
        if rule is None or rule.approval is None:
            raise AccessError(f"rule {rule_name} no longer requires approval in the policies")
        return rule.approval


def _run(args: argparse.Namespace, action: object) -> int:
    try:
        context = _Context(args)
    except NotAuthenticated as e:
        print(f"phigate: {e}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        return int(action(context, args))  # type: ignore[operator]
    except AccessError as e:
        print(f"phigate: {e}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        context.store.close()


def cmd_request(args: argparse.Namespace) -> int:
    return _run(args, _request)


def _request(context: _Context, args: argparse.Namespace) -> int:
    rule = context.rules.get(args.rule)
    if rule is None or rule.approval is None:
        raise AccessError(f"no rule {args.rule!r} with requires_approval in the policies")
    duration = parse_duration(args.duration)
    if duration is None or duration <= 0:
        print("phigate: --duration wants e.g. 30m, 2h or 1d", file=sys.stderr)
        return EXIT_USAGE
    if duration > rule.approval.max_duration_s:
        raise AccessError(f"rule {rule.name} grants at most "
                          f"{human_duration(rule.approval.max_duration_s)}")
    if not _may_request(rule, context.person):
        raise AccessError(f"rule {rule.name} does not apply to {context.person.name}")
    if not args.reason.strip():
        raise AccessError("give a reason (a ticket or incident)")
    request = context.store.request(rule.name, context.person.name, args.reason.strip(),
                                    duration, time.time())
    print(f"{request.id}\tpending\t{rule.name}\tfor {human_duration(duration)}; approvers: "
          f"{', '.join(sorted(rule.approval.approvers))}")
    return EXIT_OK


def _may_request(rule: Rule, person: Person) -> bool:
    """The rule's identity conditions (users/groups) say who may ask for it."""
    ctx = RequestContext(identity=person.name, database="", groups=person.groups,
                         now=dt.datetime.now(dt.UTC))
    return rule.users is None and rule.groups is None or applies(
        Rule(name=rule.name, source=rule.source, users=rule.users, groups=rule.groups), ctx)


def cmd_list(args: argparse.Namespace) -> int:
    return _run(args, _list)


def _list(context: _Context, args: argparse.Namespace) -> int:
    now = time.time()
    requests = context.store.requests(None if args.all else (PENDING, APPROVED))
    shown = [r for r in requests if args.all or r.state == PENDING or r.active(now)]
    if args.json:
        for r in shown:
            print(json.dumps({"id": r.id, "state": r.state, "rule": r.rule,
                              "requester": r.requester, "reason": r.reason,
                              "duration_s": r.duration_s, "approvals": list(r.approvers),
                              "expires_at": r.expires_at}))
        return EXIT_OK
    for r in shown:
        until = (f"until {dt.datetime.fromtimestamp(r.expires_at, dt.UTC):%Y-%m-%d %H:%M:%S}Z"
                 if r.expires_at else f"for {human_duration(r.duration_s)}")
        print(f"{r.id}\t{r.state}\t{r.rule}\t{r.requester}\t{until}\t{r.reason}")
    return EXIT_OK


def cmd_approve(args: argparse.Namespace) -> int:
    return _run(args, _approve)


def _approve(context: _Context, args: argparse.Namespace) -> int:
    request = context.store.get(args.id)
    done = context.store.approve(args.id, context.person.name, context.person.groups,
                                 context.approval(request.rule), time.time())
    _report(done)
    return EXIT_OK


def cmd_deny(args: argparse.Namespace) -> int:
    return _run(args, _deny)


def _deny(context: _Context, args: argparse.Namespace) -> int:
    request = context.store.get(args.id)
    _report(context.store.deny(args.id, context.person.name, context.person.groups,
                               context.approval(request.rule), args.reason, time.time()))
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    return _run(args, _revoke)


def _revoke(context: _Context, args: argparse.Namespace) -> int:
    request = context.store.get(args.id)
    rule = context.rules.get(request.rule)
    may = rule is not None and rule.approval is not None and rule.approval.may_approve(
        context.person.name, context.person.groups)
    _report(context.store.revoke(args.id, context.person.name, may, args.reason, time.time()))
    return EXIT_OK


def _report(request: Request) -> None:
    extra = ""
    if request.state == APPROVED and request.expires_at:
        extra = f" until {dt.datetime.fromtimestamp(request.expires_at, dt.UTC):%H:%M:%S}Z"
    elif request.state == PENDING:
        extra = f" ({len(request.approvers)} approval(s) so far)"
    print(f"{request.id}\t{request.state}\t{request.rule}\t{request.requester}{extra}")
