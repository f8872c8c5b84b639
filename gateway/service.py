"""Assembling a running gateway from settings: hooks, server, signals, shutdown.

``phigate serve`` and ``phigate demo`` both come through here, so what runs in
the demo is what runs in production.
"""

from __future__ import annotations

import logging

from .config import Settings
from .hooks import Hook
from .server import Gateway

log = logging.getLogger("phigate.service")


def build_hooks(settings: Settings) -> list[Hook]:
    """The interception chain, in the fixed order: decide (policy) → journal → record."""
    return []


async def run_gateway(settings: Settings) -> int:
    gateway = Gateway(settings, build_hooks(settings))
    await gateway.start()
    gateway.install_signal_handlers()
    await gateway.wait_stopped()
    await gateway.drain()
    return 0
