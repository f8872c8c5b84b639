"""A TCP relay in its own thread, for tests that watch or slow what passes a hop.

``ThreadedRelay`` forwards each connection it accepts to ``target_port`` on 127.0.0.1;
subclasses see the bytes going to the client (:meth:`to_client`) and may hold a connection
before it reaches the target (:meth:`opening`). Used by the held-answer tests (what the
gateway sent the client) and the bulk tests (CancelRequests that land late).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Self


class ThreadedRelay:
    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__,
                                        daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def opening(self, client: asyncio.StreamReader) -> bytes:
        """Before the target is dialled: the bytes read from the client so far (none)."""
        return b""

    def to_client(self, data: bytes) -> None:
        """Bytes the target sent, on their way to the client."""

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._session, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.run_until_complete(asyncio.sleep(0.05))
        self._loop.close()

    async def _session(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
                       ) -> None:
        first = await self.opening(client_r)
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        up_w.write(first)

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, to_client: bool
                       ) -> None:
            try:
                while data := await r.read(65536):
                    if to_client:
                        self.to_client(data)
                    w.write(data)
                    await w.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                w.close()

        await asyncio.gather(pipe(client_r, up_w, False), pipe(up_r, client_w, True))
