"""The relay's two sockets as asyncio Protocols, taken over from start-up's streams.

Start-up and authentication read whole messages through StreamReader/StreamWriter
(``gateway/proxy/wire.py``); once a session relays, every chunk is handed straight from
the transport's ``data_received`` to the relay (``gateway/proxy/relay.py``), which
answers it synchronously: no StreamReader buffer copy, no future and task wake-up per
read, no ``drain`` per write. Backpressure is the transports' own: when one side's
write buffer is full (``pause_writing``), the relay stops reading the other side.

:func:`take_over` moves a stream pair's transport, and the bytes its reader already
buffered, to a new protocol; :func:`resume` lets a coroutine that was started
synchronously (and needed to wait after all) finish inside a task.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

T = TypeVar("T")


@dataclass(slots=True)
class Pipe:
    """A socket handed from start-up to the relay: its transport, the bytes start-up read
    but did not consume, and whether the peer already sent EOF."""

    transport: asyncio.Transport
    leftover: bytes = b""
    at_eof: bool = False


class Side(asyncio.Protocol):
    """One socket of a relayed session; forwards every event to the relay's callbacks.

    ``full(True)``: this socket's write buffer passed its high-water mark (``False``: it
    drained). ``previous`` is the StreamReaderProtocol start-up used: it still learns of
    the connection's loss, so the StreamWriter's ``wait_closed`` keeps working.
    """

    __slots__ = ("data_received", "closed", "full", "previous")

    def __init__(self, received: Callable[[bytes], None],
                 closed: Callable[[Exception | None], None], full: Callable[[bool], None],
                 previous: asyncio.BaseProtocol | None) -> None:
        self.data_received = received  # type: ignore[method-assign,assignment]  # no wrapper
        self.closed = closed
        self.full = full
        self.previous = previous

    def eof_received(self) -> bool | None:
        self.closed(None)
        return None  # close the transport: a session ends with either side's EOF

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed(exc)
        if self.previous is not None:
            self.previous.connection_lost(exc)

    def pause_writing(self) -> None:
        self.full(True)

    def resume_writing(self) -> None:
        self.full(False)


def take_over(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
              consumed_leftover: bytes = b"") -> Pipe:
    """The stream pair's socket as a :class:`Pipe`; ``consumed_leftover``: what a frame
    buffer in front of the reader holds. Until :func:`attach`, data stays in the reader."""
    # uvloop's transports implement asyncio.Transport without deriving from it.
    transport = cast(asyncio.Transport, writer.transport)
    # StreamReader has no public way to take its buffer without awaiting; its ``_buffer``
    # (a bytearray) has been there since asyncio's first release.
    buffered: bytearray = reader._buffer  # type: ignore[attr-defined]
    leftover = consumed_leftover + bytes(buffered)
    buffered.clear()
    return Pipe(transport, leftover, reader.at_eof())


def attach(transport: asyncio.Transport, received: Callable[[bytes], None],
           closed: Callable[[Exception | None], None], full: Callable[[bool], None]) -> None:
    """Send the transport's events to these callbacks from now on (and read again, in case
    the stream had paused reading because its buffer was full)."""
    transport.set_protocol(Side(received, closed, full, transport.get_protocol()))
    if not transport.is_closing():
        transport.resume_reading()


# After its last words the gateway reads (and drops) what the client still sends for at most
# this long, until its EOF: closing with its bytes unread would make the kernel reset the
# connection, and the client might never read those words.
LINGER_S = 2.0


class _Discard(asyncio.Protocol):
    """A closed session's socket: what arrives is dropped; the client's EOF closes it."""

    __slots__ = ("transport", "previous")

    def __init__(self, transport: asyncio.Transport, previous: asyncio.BaseProtocol) -> None:
        self.transport = transport
        self.previous = previous

    def data_received(self, data: bytes) -> None:
        return None

    def eof_received(self) -> bool | None:
        return None  # closes the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.previous.connection_lost(exc)


def linger_close(transport: asyncio.Transport) -> None:
    """Send a FIN after what is written, keep reading until the peer's EOF (at most
    :data:`LINGER_S`), then close: the peer reads our last words and EOF, never a reset."""
    if transport.is_closing() or isinstance(transport.get_protocol(), _Discard):
        return
    if not transport.can_write_eof():  # TLS: the close_notify alert does this
        transport.close()
        return
    try:
        transport.write_eof()
    except OSError:
        transport.close()  # already reset by the peer
        return
    transport.set_protocol(_Discard(transport, transport.get_protocol()))
    transport.resume_reading()
    asyncio.get_running_loop().call_later(LINGER_S, transport.close)


@types.coroutine
def _finish(coroutine: Coroutine[Any, Any, T], waiting_on: Any) -> Generator[Any, Any, T]:
    # Delegates as ``yield from`` would, starting from the coroutine's first suspension:
    # the task waits on what the coroutine waits on; cancellation is thrown into it.
    while True:
        try:
            sent = yield waiting_on
        except BaseException as e:
            try:
                waiting_on = coroutine.throw(e)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
        else:
            try:
                waiting_on = coroutine.send(sent)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]


async def resume(coroutine: Coroutine[Any, Any, T], waiting_on: Any) -> T:
    """Finish ``coroutine``, which was driven by hand (``send(None)``) until it yielded
    ``waiting_on``: run it in a task with ``create_task(resume(coroutine, waiting_on))``."""
    return await _finish(coroutine, waiting_on)
