"""``phigate alerts test``: send a test alert through every configured sink, report each.

:func:`register` adds the command to ``phigate``'s sub-parsers. One attempt
per sink (no retries, so a broken sink is reported at once); exit 0 when every
sink accepted the alert, 1 when any failed, 2 without sinks. The test alert is
not journaled: a running gateway holds the journal.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import uuid
from collections.abc import Mapping

from ..settings.config import load_config
from .model import Alert
from .settings import SinkSettings
from .sinks import SinkError, build_sink

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
TEST_RULE = "phigate-alerts-test"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    alerts = subparsers.add_parser("alerts", help="alert sinks")
    commands = alerts.add_subparsers(dest="alerts_command", required=True, metavar="{test}")
    test = commands.add_parser("test", help="send a test alert through every sink")
    test.add_argument("-c", "--config", required=True, help="path to phigate.yaml")
    test.set_defaults(func=test_command)


def test_command(args: argparse.Namespace) -> int:
    settings = load_config(args.config)
    sinks = settings.alerts.sinks if settings.alerts else {}
    if not sinks:
        print(f"{args.config}: no alert sinks configured", file=sys.stderr)
        return EXIT_USAGE
    results = asyncio.run(_send_all(sinks))
    for name, error in results.items():
        kind = sinks[name].type
        print(f"{name} ({kind}): " + ("ok" if error is None else f"FAILED: {error}"))
    return EXIT_OK if all(e is None for e in results.values()) else EXIT_FAILED


def test_alert(sinks: tuple[str, ...]) -> Alert:
    return Alert(id=uuid.uuid4().hex, rule=TEST_RULE, condition="test", subject="test",
                 summary="PHIGate test alert: if you can read this, the sink works",
                 time=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                 sinks=sinks, details={"test": True})


async def _send_all(sinks: Mapping[str, SinkSettings]) -> dict[str, str | None]:
    alert = test_alert(tuple(sinks))
    outcomes = await asyncio.gather(*(_send(settings, alert) for settings in sinks.values()))
    return dict(zip(sinks, outcomes, strict=True))


async def _send(settings: SinkSettings, alert: Alert) -> str | None:
    """One attempt; the error message, or None when the sink took the alert."""
    sink = build_sink(settings)
    try:
        await sink.send(alert)
    except SinkError as e:
        return e.message
    finally:
        sink.close()
    return None
