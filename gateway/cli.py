"""``phigate`` — the one command-line entry point.

``main(argv) -> int``; each sub-command is a small handler returning its exit
code. Feature packages add their own sub-commands through a ``register``
function so this module stays a table of contents. Exit codes: 0 success,
1 a negative answer (tampered, denied, failed), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Sequence

from protocols.postgres.scram import make_verifier

from .access.cli import register as register_access_commands
from .alerts.cli import register as register_alert_commands
from .archive.cli import extend_journal_commands as extend_archive_commands
from .console.cli import register as register_console_command
from .drill.cli import register as register_drill_commands
from .errors import ConfigError
from .journal.cli import register as register_journal_commands
from .masking.cli import extend_keygen as extend_masking_keygen
from .ops.logs import configure_logging
from .policy.cli import register as register_policy_commands
from .recording.cli import extend_journal_commands
from .recording.cli import register as register_recording_commands
from .settings.config import load_config
from .sso.cli import register as register_sso_commands

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
JOURNAL_SWITCH_INTERVAL_S = 0.0005
log = logging.getLogger("phigate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phigate", description=(
        "PHIGate: an auditing PostgreSQL gateway for databases that hold PHI."))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("-c", "--config", required=True, help="path to phigate.yaml")
    serve.set_defaults(func=cmd_serve)

    check = commands.add_parser("check-config", help="validate a config file (exit 0 or 2)")
    check.add_argument("-c", "--config", required=True)
    check.set_defaults(func=cmd_check_config)

    passwd = commands.add_parser("passwd", help="read a password, print its SCRAM verifier")
    passwd.add_argument("--iterations", type=int, default=4096)
    passwd.set_defaults(func=cmd_passwd)

    demo = commands.add_parser("demo", help="throwaway PostgreSQL with synthetic patients "
                                            "and a gateway in front of it")
    demo.add_argument("--port", type=int, default=6432, help="gateway port (default 6432)")
    demo.set_defaults(func=_cmd_demo)

    register_journal_commands(commands, extend=_extend_journal_commands)
    register_recording_commands(commands)
    register_alert_commands(commands)
    register_sso_commands(commands)
    register_access_commands(commands)
    register_policy_commands(commands)
    register_drill_commands(commands)
    register_console_command(commands)
    return parser


def _extend_journal_commands(name: str, parser: argparse.ArgumentParser) -> None:
    extend_journal_commands(name, parser)  # recordings first, the archive wraps them
    extend_archive_commands(name, parser)
    extend_masking_keygen(name, parser)  # keygen --masking-key


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as e:
        print(f"phigate: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAILED


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = load_config(args.config)
    print(f"{args.config}: OK ({len(settings.databases)} databases, {len(settings.users)} users,"
          f" {len(settings.policy_files)} policy files)")
    return EXIT_OK


def cmd_passwd(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("phigate: passwords do not match", file=sys.stderr)
            return EXIT_FAILED
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("phigate: empty password refused", file=sys.stderr)
        return EXIT_USAGE
    print(make_verifier(password, iterations=args.iterations))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    settings = load_config(args.config)
    configure_logging(settings.log_level)
    from .service import run_gateway

    # The journal's disk thread needs the GIL for an instant per commit; with the default
    # 5 ms switch interval a busy event loop would hold every statement up that long.
    sys.setswitchinterval(JOURNAL_SWITCH_INTERVAL_S)

    _install_uvloop()
    return asyncio.run(run_gateway(settings))


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo.demo import run_demo

    configure_logging("warning")
    _install_uvloop()
    return run_demo(port=args.port)


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


if __name__ == "__main__":
    sys.exit(main())
