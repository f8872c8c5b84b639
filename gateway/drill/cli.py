"""``phigate drill -c phigate.yaml``: run an audit drill against the running gateway now.

Runs :func:`.run.run_drill`, signs the report with the journal key, leaves it in
the report directory, waits for the gateway to journal it as a ``drill`` entry
and prints each check. Exit 0 when every check passed and the report is
journaled, 1 otherwise, 2 for a config without ``drill:``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from ..errors import ConfigError
from ..journal.keys import load_private
from ..settings.config import load_config
from . import report as reports
from .report import report_dir
from .run import run_drill
from .service import MARKER

JOURNALED_TIMEOUT_S = 10.0  # the gateway looks for reports every 0.2 s


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    drill = subparsers.add_parser("drill", help="run an audit drill through the gateway "
                                                "(exit 0 passed, 1 failed)")
    drill.add_argument("-c", "--config", required=True, help="path to phigate.yaml")
    drill.set_defaults(func=drill_command)


def drill_command(args: argparse.Namespace) -> int:
    settings = load_config(args.config)
    if settings.drill is None or settings.journal is None:
        raise ConfigError("no drill: section (identity, password_env, …)",
                          file=str(settings.source), key="drill")
    result = asyncio.run(run_drill(settings, settings.drill))
    data = reports.sign(result, load_private(settings.journal.signing_key))
    path = reports.write(report_dir(settings, settings.drill), data, result.started)
    for check in result.checks:
        seqs = f" (seq {', '.join(map(str, check.seqs))})" if check.seqs else ""
        print(f"{'PASS' if check.passed else 'FAIL'}  {check.name}: {check.detail}{seqs}")
    seq = _journaled(path)
    print(f"report: {path}")
    if seq is None:
        print("FAIL  the gateway did not journal the report (is it running?)")
        return 1
    print(f"journaled as drill entry seq {seq}")
    print("drill PASSED" if result.passed else f"drill FAILED ({len(result.failures)} checks)")
    return 0 if result.passed else 1


def _journaled(path: Path) -> int | None:
    marker = path.with_name(path.name + MARKER)
    deadline = time.monotonic() + JOURNALED_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            return int(json.loads(marker.read_bytes())["seq"])
        except (OSError, ValueError, KeyError):
            time.sleep(0.1)
    print(f"phigate: {marker} did not appear", file=sys.stderr)
    return None
