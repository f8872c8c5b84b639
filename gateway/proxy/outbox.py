"""What one pass of the relay over the client's frames sends upstream, in order.

Driven by ``Relay._process_client`` (``gateway/proxy/client_side.py``). Frames are added in the
client's order; a pipelined statement whose journal entry is still being written
(``Statement.write_ahead``, see ``gateway/proxy/hooks.py``) is added with its gate, and
nothing behind it goes upstream before the gate resolves. So the statements behind it
are decided, and their entries written in the same batch, while it waits, and each
statement still runs only once its own entry is durable. A gate that fails is replaced
by what the relay answers instead (the refusal).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .bookkeeping import Pending
from .hooks import Statement


@dataclass(slots=True)
class Gate:
    """A statement frame held until its journal entry is durable."""

    durable: asyncio.Future[int]
    statement: Statement
    pending: Pending | None


Write = Callable[[bytes | bytearray], None]
Refuse = Callable[[Gate, BaseException], bytes]  # a failed gate: what goes in its place


class Outbox:
    __slots__ = ("_write", "_refuse", "_out", "_held", "runs")

    def __init__(self, write: Write, refuse: Refuse) -> None:
        self._write = write
        self._refuse = refuse
        self._out = bytearray()  # behind the last held frame, or all of it when none is held
        self._held: deque[tuple[bytes, Gate | None]] = deque()
        self.runs = False  # a statement that may run is added and not yet sent

    def add(self, data: bytes) -> None:
        self._out += data

    def add_gated(self, frame: bytes, gate: Gate) -> None:
        if self._held:
            self._held.append((bytes(self._out), None))
        elif self._out:
            self._write(self._out)  # ahead of the first held frame: free to go
        self._out = bytearray()
        self._held.append((frame, gate))

    def send_ready(self) -> None:
        """Send what needs no more waiting: before the next statement is decided, so that
        what is decided runs upstream meanwhile, as it would directly (its errors reach a
        client that is still sending)."""
        held = self._held
        while held and (held[0][1] is None or held[0][1].durable.done()):
            self._send(*held.popleft())
        if not held and self._out:
            self._write(self._out)
            self._out = bytearray()
        self.runs = False

    async def send_all(self, waiting: Callable[[bool], None]) -> None:
        """Send everything, each held frame once its gate resolved."""
        held = self._held
        while held:
            frame, gate = held.popleft()
            if gate is not None and not gate.durable.done():
                waiting(True)
                try:
                    with contextlib.suppress(Exception):  # looked at in _send
                        await gate.durable
                finally:
                    waiting(False)
            self._send(frame, gate)
        if self._out:
            self._write(self._out)
            self._out = bytearray()

    def _send(self, frame: bytes, gate: Gate | None) -> None:
        if gate is not None:
            durable = gate.durable
            failure = (asyncio.CancelledError() if durable.cancelled() else durable.exception())
            if failure is not None:
                frame = self._refuse(gate, failure)
        if frame:
            self._write(frame)
