"""``phigate console -c phigate.yaml``: serve the auditor's web console.

:func:`register` adds the sub-command to ``phigate``'s parser. The config is read like the
auditor commands read it (upstream and sink secrets are not needed, so not required). Exit
codes: 0 after SIGINT/SIGTERM, 2 for a configuration error (no ``console:`` section, bad TLS
files, the port taken).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from ..errors import ConfigError
from ..ops.logs import configure_logging
from ..recording.cli import load_for_auditors

EXIT_USAGE = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    console = subparsers.add_parser("console", help="serve the auditor's web console")
    console.add_argument("-c", "--config", required=True, help="path to phigate.yaml")
    console.set_defaults(func=console_command)


def console_command(args: argparse.Namespace) -> int:
    from .app import run_console

    settings = load_for_auditors(args.config)
    if settings.console is None:
        raise ConfigError("the config has no console section (console: {listen, auditors})",
                          file=str(settings.source), key="console")
    configure_logging(settings.log_level)
    try:
        return asyncio.run(run_console(settings))
    except OSError as e:
        print(f"phigate: console cannot listen on {settings.console.host}:"
              f"{settings.console.port}: {e.strerror}", file=sys.stderr)
        return EXIT_USAGE
