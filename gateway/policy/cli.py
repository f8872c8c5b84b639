"""``phigate policy check`` and ``phigate policy test``: try policies without a running gateway.

``register(subparsers)`` adds the ``policy`` command to ``gateway.cli``'s parser. This module
reads the files (the ``policies`` package never does I/O) and reads the clock for the default
``now``. Policy files come from the gateway config (``-c phigate.yaml``) or from ``--policy
FILE`` (repeatable, overrides the config's list); groups come from ``--groups``, else from the
config's ``users``. Exit codes: 0 allow / all cases passed, 1 deny / a case failed, 2 usage or
configuration error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from policies.context import RequestContext
from policies.engine import Engine
from policies.loader import PolicyError, load_policies
from policies.model import Decision
from policies.testcases import format_results, load_cases, masked_columns, run_cases

from ..errors import ConfigError
from ..settings.config import load_config

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    """Bad command-line input; printed and mapped to exit code 2."""


def register(subparsers: Any) -> None:
    """Add ``policy check`` and ``policy test`` to the top-level sub-command table."""
    policy = subparsers.add_parser("policy", help="check or test access policies offline")
    commands = policy.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")

    check = commands.add_parser("check", help="decide one query string (exit 0 allow, 1 deny)")
    _common(check)
    check.add_argument("--user", required=True, help="identity to decide for")
    check.add_argument("--database", required=True, help="database the client connects to")
    check.add_argument("--ip", help="client address (rules with clients: need one)")
    check.add_argument("--reason", help="session reason, as SET phigate.reason would give")
    check.add_argument("--groups", help="comma-separated groups (default: from the config)")
    check.add_argument("--phi-rows", type=int, default=0, metavar="N",
                       help="PHI rows the identity read in the last hour")
    check.add_argument("sql", help="the query string")
    check.set_defaults(func=cmd_check)

    test = commands.add_parser("test", help="run a YAML file of cases (exit 1 on any failure)")
    _common(test)
    test.add_argument("file", help="cases file, e.g. policies/clinic.tests.yaml")
    test.set_defaults(func=cmd_test)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="path to phigate.yaml")
    parser.add_argument("--policy", action="append", default=[], metavar="FILE",
                        help="policy file (repeatable; replaces the config's list)")
    parser.add_argument("--now", help="ISO date-time with offset to decide at (default: now)")


def cmd_check(args: argparse.Namespace) -> int:
    try:
        engine, users = _load(args)
        groups = _groups(args.groups, users.get(args.user))
        ctx_now = _now(args.now)
    except (_UsageError, PolicyError, ConfigError) as e:
        return _usage(e)
    ctx = RequestContext(identity=args.user, database=args.database, now=ctx_now, groups=groups,
                         client_ip=args.ip, reason=args.reason,
                         phi_rows_last_hour=max(args.phi_rows, 0))
    decision = engine.decide(ctx, args.sql)
    print(render(decision, masked_columns(engine, ctx, args.sql, decision)))
    return EXIT_OK if decision.allowed else EXIT_FAILED


def cmd_test(args: argparse.Namespace) -> int:
    try:
        engine, users = _load(args)
        cases = load_cases(_read(Path(args.file)), args.file)
        now = _now(args.now)
    except (_UsageError, PolicyError, ConfigError) as e:
        return _usage(e)
    results = run_cases(engine, cases, now=now, users=users)
    print(format_results(results))
    return EXIT_OK if all(r.passed for r in results) else EXIT_FAILED


def render(decision: Decision, masked: dict[str, str] | None = None) -> str:
    """The decision as aligned ``key: value`` lines; ``masked``: column → how it is shown."""
    verdict: str = decision.action
    if decision.would_deny:
        verdict += " (dry run: the policies would deny)"
    lines = [
        ("decision", verdict),
        ("rules", ", ".join(decision.rules) or "-"),
        ("reason", decision.reason),
        ("hint", decision.hint or "-"),
        ("classes", ", ".join(decision.classes) or "-"),
        ("tables", ", ".join(decision.tables) or "-"),
        ("phi", ", ".join(decision.phi_tables) or "-"),
        ("max_rows", _max_rows(decision)),
        ("max_bytes", _max_bytes(decision)),
    ]
    if decision.export_via:  # what made the statement a bulk export
        lines.append(("export", "; ".join(decision.export_via)))
    flags = [name for name, on in (("bulk_export", decision.bulk_export),
                                   ("dangerous", decision.dangerous),
                                   ("alert", decision.alert)) if on]
    if flags:
        lines.append(("flags", ", ".join(flags)))
    if masked is not None:
        lines.append(("masked", ", ".join(f"{k} {v}" for k, v in masked.items()) or "-"))
    return "\n".join(f"{key + ':':<10} {value}" for key, value in lines)


def _max_rows(decision: Decision) -> str:
    if decision.max_rows is None:
        return "-"
    if decision.row_weight > 1:
        return (f"{decision.max_rows} (each row carries {decision.row_weight} rows of PHI "
                "tables)")
    return str(decision.max_rows)


def _max_bytes(decision: Decision) -> str:
    if decision.max_bytes is None:
        return "-"
    derived = " (derived from max_rows)" if decision.max_bytes_derived else ""
    return f"{decision.max_bytes}{derived}"


def _load(args: argparse.Namespace) -> tuple[Engine, Mapping[str, frozenset[str]]]:
    if not args.config and not args.policy:
        raise _UsageError("give -c phigate.yaml or --policy FILE")
    users: dict[str, frozenset[str]] = {}
    files: Sequence[Path] = [Path(p) for p in args.policy]
    if args.config:
        settings = load_config(args.config)
        users = {name: user.groups for name, user in settings.users.items()}
        if not files:
            files = settings.policy_files
    if not files:
        print("phigate: warning: no policy files configured: every statement is denied",
              file=sys.stderr)
    policies = load_policies((_read(path), str(path)) for path in files)
    return Engine(policies), users


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise _UsageError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from e


def _groups(option: str | None, configured: frozenset[str] | None) -> frozenset[str]:
    if option is not None:
        return frozenset(g.strip() for g in option.split(",") if g.strip())
    return configured or frozenset()


def _now(text: str | None) -> dt.datetime:
    if text is None:
        return dt.datetime.now(dt.UTC)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as e:
        raise _UsageError(f"--now: not an ISO date-time: {text!r}") from e
    if moment.utcoffset() is None:
        raise _UsageError("--now: give a UTC offset, e.g. 2024-06-04T10:00:00-04:00")
    return moment


def _usage(error: Exception) -> int:
    print(f"phigate: {error}", file=sys.stderr)
    return EXIT_USAGE
