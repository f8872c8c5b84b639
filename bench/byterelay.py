"""A bare Python TCP byte relay: the floor any Python proxy pays, for the pgbench comparison.

Owns nothing but sockets: every client connection gets one upstream connection and bytes are
copied both ways without looking at them. ``bench/pgbench.py`` starts it as a subprocess, in one
of two flavours: ``streams`` (asyncio StreamReader/StreamWriter, the machinery PHIGate's relay
uses, so the difference to PHIGate is the cost of the gateway's own work) and ``protocol``
(asyncio Protocols writing straight to the peer transport, the cheapest thing asyncio offers).
uvloop is used when installed, as ``phigate serve`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

READ_CHUNK = 256 * 1024  # the same read size as gateway/proxy/relay.py


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(READ_CHUNK):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def streams_handler(host: str, port: int) -> StreamHandler:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection(host, port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, upstream_w), _pipe(upstream_r, client_w))

    return handle


class _Half(asyncio.Protocol):
    """One side of a protocol-flavour relay; writes what it receives to its peer's transport."""

    def __init__(self, peer: _Half | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer = peer
        self.backlog: list[bytes] = []  # client bytes that arrive before the upstream connects

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self.backlog.append(data)
        else:
            peer.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    # Flow control: when our peer cannot keep up, stop reading from our side.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


def protocol_factory(host: str, port: int) -> Callable[[], _Half]:
    def make() -> _Half:
        client = _Half()
        loop = asyncio.get_running_loop()

        async def connect() -> None:
            try:
                _, upstream = await loop.create_connection(lambda: _Half(client), host, port)
            except OSError:
                if client.transport is not None:
                    client.transport.close()
                return
            client.peer = upstream
            if client.backlog and upstream.transport is not None:
                upstream.transport.write(b"".join(client.backlog))
                client.backlog.clear()

        _CONNECTS.add(task := loop.create_task(connect(), name="relay-connect"))
        task.add_done_callback(_CONNECTS.discard)
        return client

    return make


_CONNECTS: set[asyncio.Task[None]] = set()


async def serve(listen_port: int, host: str, port: int, flavour: str) -> None:
    loop = asyncio.get_running_loop()
    if flavour == "streams":
        server = await asyncio.start_server(streams_handler(host, port), "127.0.0.1", listen_port,
                                            limit=READ_CHUNK)
    else:
        server = await loop.create_server(protocol_factory(host, port), "127.0.0.1", listen_port)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="HOST:PORT")
    parser.add_argument("--flavour", choices=("streams", "protocol"), default="streams")
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    try:
        import uvloop
    except ImportError:
        pass
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(serve(args.listen_port, host, int(port), args.flavour))
    return 0


if __name__ == "__main__":
    sys.exit(main())
