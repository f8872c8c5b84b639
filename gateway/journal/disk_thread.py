"""The journal writer's I/O thread: blocking segment calls, in order, off the event loop.

The writer hands each batch's write and fdatasync here so the event loop keeps
relaying while the disk syncs. Driven by :class:`.writer.Writer` only.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class DiskThread:
    """One thread that runs the writer's blocking calls, in order, off the event loop.

    Lighter than a ThreadPoolExecutor round trip (a third of the CPU per batch),
    which matters when one session commits alone. A daemon thread: if the
    gateway dies without closing the journal, acknowledged entries are already
    on disk and nothing here must keep the process alive.
    """

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[tuple[asyncio.Future[Any], Callable[..., Any],
                                             tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="phigate-journal-io",
                                        daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._loop is None:
            raise RuntimeError("the journal's disk thread is not running")
        future: asyncio.Future[T] = self._loop.create_future()
        self._calls.put((future, fn, args))
        return future

    def stop(self) -> None:
        """Blocking: let queued calls finish, then end the thread."""
        self._calls.put(None)
        if self._thread.is_alive():
            self._thread.join()

    def _serve(self) -> None:
        loop = self._loop
        if loop is None:
            return
        while (call := self._calls.get()) is not None:
            future, fn, args = call
            try:
                result, error = fn(*args), None
            except BaseException as e:  # handed to the awaiting coroutine, never lost
                result, error = None, e
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:
                return  # the loop is closed: nobody is waiting any more


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
