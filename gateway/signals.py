"""Process signals: SIGTERM/SIGINT stop the gateway, SIGHUP reloads it, even while it is busy.

Driven by ``service.run_gateway``. The handlers are Python-level (``signal.signal``), not the
event loop's (``loop.add_signal_handler``): Python runs them in the main thread between two
bytecodes, so they run even while a callback keeps the loop from coming back, and they hand
the work to the loop with ``call_soon_threadsafe``. A stop also arms a timer thread: if the
process is still running ``shutdown_grace`` + :data:`STOP_MARGIN_S` later (the loop never came
back to drain), it logs where the main thread is stuck and exits with :data:`EXIT_STUCK`. The
journal is durable entry by entry, so such an exit loses at most the final checkpoint, which
recovery restores at the next start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .proxy.server import Gateway

log = logging.getLogger("phigate.signals")

STOP_MARGIN_S = 15.0  # beyond the grace: closing sessions (5 s) and the journal's last checkpoint
EXIT_STUCK = 4  # SIGTERM could not drain: the event loop never came back

_Handler = Callable[[int, FrameType | None], Any] | int | None


class Signals:
    """Installs the handlers on creation; ``close()`` restores the previous ones."""

    def __init__(self, grace_s: float) -> None:
        self.stop = asyncio.Event()
        self.gateway: Gateway | None = None  # set once listening; it reloads and knows the grace
        self._grace_s = grace_s
        self._loop = asyncio.get_running_loop()
        self._timer: threading.Timer | None = None
        self._previous: dict[int, _Handler] = {}
        for signum, handler in ((signal.SIGTERM, self._on_stop), (signal.SIGINT, self._on_stop),
                                (signal.SIGHUP, self._on_reload)):
            self._previous[signum] = signal.signal(signum, handler)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self._loop.call_soon_threadsafe(self.stop.set)
        if self._timer is None:
            grace = self.gateway.settings.limits.shutdown_grace_s if self.gateway else \
                self._grace_s
            self._timer = threading.Timer(grace + STOP_MARGIN_S, _stuck,
                                          args=(threading.main_thread().ident,))
            self._timer.name = "phigate-stop-deadline"
            self._timer.daemon = True
            self._timer.start()

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        self._loop.call_soon_threadsafe(self._reload)

    def _reload(self) -> None:
        if self.gateway is None:
            log.warning("SIGHUP before the gateway was listening: ignored")
            return
        self.gateway.reload()


def _stuck(main_ident: int | None) -> None:
    """The stop deadline passed: say where the main thread is, then leave."""
    frame = sys._current_frames().get(main_ident) if main_ident is not None else None
    where = "".join(traceback.format_stack(frame)) if frame is not None else "unknown"
    log.critical("SIGTERM: the event loop did not drain in time; exiting; main thread at:\n%s",
                 where)
    logging.shutdown()
    os._exit(EXIT_STUCK)
