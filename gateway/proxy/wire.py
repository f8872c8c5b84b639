"""Reading and writing whole protocol frames on asyncio streams.

Used during the start-up and authentication phases, where each step waits for
one message. The relay's steady state does not use this module: it scans
frames in bulk (see ``gateway/proxy/relay.py``).
"""

from __future__ import annotations

import asyncio

from protocols.postgres.errors import RemoteProtocolError
from protocols.postgres.framing import FrameBuffer

READ_CHUNK = 65536


class PeerClosed(Exception):
    """The peer closed the connection before a whole message arrived."""


class FrameStream:
    """A StreamReader/StreamWriter pair with a frame buffer in front of the reader."""

    __slots__ = ("reader", "writer", "frames")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 max_message_size: int) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = FrameBuffer(max_message_size)

    async def _fill(self) -> None:
        data = await self.reader.read(READ_CHUNK)
        if not data:
            raise PeerClosed()
        self.frames.feed(data)

    async def read_startup(self) -> bytes:
        while (packet := self.frames.next_startup()) is None:
            await self._fill()
        return packet

    async def read_frame(self) -> bytes:
        while (frame := self.frames.next_frame()) is None:
            await self._fill()
        return frame

    async def read_byte(self) -> bytes:
        """One raw byte (the answer to an SSLRequest)."""
        if len(self.frames):
            raise RemoteProtocolError("unexpected data after SSLRequest")
        data = await self.reader.readexactly(1)
        return data

    def leftover(self) -> bytes:
        """Bytes already read but not yet consumed; handed to the relay."""
        return self.frames.take_all()

    async def send(self, *frames: bytes) -> None:
        self.writer.write(b"".join(frames))
        await self.writer.drain()

    def close(self) -> None:
        close_gracefully(self.writer)


def close_gracefully(writer: asyncio.StreamWriter | asyncio.WriteTransport) -> None:
    """Close after a FIN: a client whose next message we never read (it was sent while we
    ended the session) then reads our last words and EOF, not a connection reset, which
    closing with unread input makes the kernel send instead of the FIN."""
    if writer.is_closing():
        return
    if writer.can_write_eof():  # not over TLS: there the close_notify alert does this
        try:
            writer.write_eof()
        except OSError:
            pass  # already reset by the peer; close() below still releases the socket
    writer.close()
