"""The journal as the gateway sees it: open, append, close.

:class:`Journal` owns the lifetimes: it locks the directory, runs recovery,
starts the group-commit writer, the checkpoint timer and the witness
publisher, and stops them in order on close. The journal hook calls ``append``
for every ``statement`` *before* it is forwarded (write-ahead; a refusal means
the statement must not run), ``append_deferred`` for a statement proved
read-only (it runs while the entry is synced; the relay holds its answer), and
``append_later`` for ``outcome`` entries.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata

from . import recovery, segments
from .chain import FORMAT_VERSION, RESERVED_FIELDS, genesis
from .checkpoints import Publisher
from .errors import JournalError, JournalLocked
from .keys import derive_parameter_key, load_private
from .parameters import ParameterRecorder
from .segments import DirectoryLock
from .settings import JournalSettings
from .writer import ChainPosition, Pending, Writer

log = logging.getLogger("phigate.journal")


@dataclass(frozen=True, slots=True)
class JournalStats:
    seq: int
    entries: int
    batches: int
    writable: bool
    # Batches per size bucket: at most BATCH_SIZE_BOUNDS[i] entries; the last, more.
    batch_sizes: tuple[int, ...] = ()


class Journal:
    """An open, writable journal. Create with :meth:`open`; always :meth:`close`."""

    def __init__(self, settings: JournalSettings, writer: Writer, publisher: Publisher,
                 lock: DirectoryLock, parameters: ParameterRecorder, journal_id: str) -> None:
        self.settings = settings
        self.journal_id = journal_id
        self._writer = writer
        self._publisher = publisher
        self._lock = lock
        self._parameters = parameters
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.Task[None] | None = None
        self._closed = False
        # append_later entries refused since the journal last accepted one (logged once).
        self._dropped = 0

    @classmethod
    async def open(cls, settings: JournalSettings, *, journal_id: str | None = None,
                   clock_ns: Callable[[], int] | None = None, program: str = "gateway"
                   ) -> Journal:
        """Lock, recover and start the journal, then write ``start`` and a checkpoint.

        Raises JournalCorrupt (tampering: run ``phigate journal verify``),
        JournalLocked, KeyFileError, or JournalFull/JournalWriteFailed if even
        the ``start`` entry cannot be written.
        """
        key = await asyncio.to_thread(load_private, settings.signing_key)
        await asyncio.to_thread(segments.make_journal_dir, settings.dir)
        lock = DirectoryLock(settings.dir)
        if not await asyncio.to_thread(lock.acquire):
            raise JournalLocked(f"journal {settings.dir} is in use by another process")
        publisher: Publisher | None = None
        writer: Writer | None = None
        try:
            await asyncio.to_thread(segments.remove_stale_temporaries, settings.dir)
            state = await asyncio.to_thread(recovery.inspect, settings.dir, key.public_key())
            if journal_id and state.journal_id and journal_id != state.journal_id:
                raise JournalError(f"{settings.dir} holds journal {state.journal_id}, "
                                   f"not {journal_id}")
            repaired = None
            if state.torn is not None:
                repaired = await asyncio.to_thread(recovery.quarantine, state.torn)
                log.warning("journal: quarantined a torn last line of %s (%d bytes) as %s",
                            repaired["segment"], repaired["bytes"], repaired["quarantine"])
            ident = state.journal_id or journal_id or uuid.uuid4().hex
            position = ChainPosition(
                journal_id=ident, last_seq=state.last_seq, head=state.head or genesis(ident),
                active=state.active, active_size=state.active_size,
                active_started_ns=state.active_started_ns)
            publisher = Publisher(settings.dir, settings.checkpoint_copies,
                                  settings.checkpoint_url)
            publisher.start()
            writer = Writer(settings, position, key, clock_ns=clock_ns or time.time_ns,
                            on_checkpoint=publisher.submit)
            await writer.start()
        except BaseException:
            if writer is not None:
                await writer.stop()
            if publisher is not None:
                await publisher.close()
            lock.release()
            raise
        parameter_key = settings.parameter_key or derive_parameter_key(key)
        journal = cls(settings, writer, publisher, lock,
                      ParameterRecorder(settings.parameters, parameter_key), ident)
        try:
            await journal._begin(program, repaired)
        except BaseException:
            await journal._shutdown()
            raise
        return journal

    async def _begin(self, program: str, repaired: dict[str, object] | None) -> None:
        await self.append("start", {
            "journal": self.journal_id, "format": FORMAT_VERSION, "by": program, "pid": os.getpid(),
            "host": socket.gethostname(), "version": _version(),
            "durability": self.settings.durability, "parameters": self.settings.parameters,
        })
        if repaired is not None:
            await self.append("recovery", repaired)
        await self.checkpoint()
        # checkpoint.json must exist before anything relies on this journal.
        await self._publisher.flush()
        self._timer = asyncio.create_task(self._tick(), name="phigate-journal-checkpoints")

    # -- the API the gateway uses ----------------------------------------------------------

    async def append(self, type: str, fields: dict[str, object], *,
                     handed_over: bool = False) -> int:
        """Append an entry; returns its seq once durable (per ``settings.durability``).

        Raises JournalFull (53100) or JournalWriteFailed (58030) when it cannot be
        written; the caller must then not run the statement. While the journal is
        broken, appends keep being refused, with a fresh attempt at the disk at
        most every ``writer.RETRY_AFTER_S``.
        """
        return await self.append_deferred(type, fields, handed_over=handed_over)

    def append_deferred(self, type: str, fields: dict[str, object], *,
                        handed_over: bool = False) -> asyncio.Future[int]:
        """Queue an entry and return its future without waiting (resolves as ``append``).

        For a statement that runs while its entry is made durable: the caller must hold
        everything that statement produces until the future resolves, and discard it if
        the future raises. Raises at once, as ``append`` does, while the journal is broken.
        ``handed_over``: the caller made ``fields`` for this entry and never touches it
        again, so the writer stamps it without a copy (the journal hook, per statement).
        """
        refusal = self._writer.refusal()
        if refusal is not None:
            raise refusal
        future: asyncio.Future[int] = self._loop.create_future()
        self._writer.submit(Pending(type, _own(fields, handed_over), future, time.perf_counter()))
        return future

    def append_later(self, type: str, fields: dict[str, object], *,
                     handed_over: bool = False) -> None:
        """Queue an entry (an ``outcome``) without waiting; ordered with all other appends.

        A failure to write it is logged and leaves the journal marked unwritable.
        ``handed_over`` as for :meth:`append_deferred`.
        """
        refusal = self._writer.refusal()
        if refusal is not None:
            self._dropped += 1
            if self._dropped == 1:
                log.error("journal: %r entry not written (%s); counting further losses",
                          type, refusal.message)
            return
        if self._dropped:
            log.warning("journal: %d entries were not written while it was unwritable",
                        self._dropped)
            self._dropped = 0
        self._writer.submit(Pending(type, _own(fields, handed_over), None))

    def digest_parameters(self, params: Sequence[bytes | None]) -> list[str | None] | None:
        """Bind parameters as recorded per ``settings.parameters`` (full/digest/none)."""
        return self._parameters(params)

    @property
    def writable(self) -> bool:
        return not self._closed and self._writer.writable

    @property
    def stats(self) -> JournalStats:
        """Counters since open, for metrics: last seq, entries and group-commit batches."""
        writer = self._writer
        return JournalStats(seq=writer.seq, entries=writer.entries, batches=writer.batches,
                            writable=self.writable, batch_sizes=tuple(writer.batch_sizes))

    def observe_appends(self, observe: Callable[[float], None]) -> None:
        """Tell ``observe`` how long each ``statement`` entry took to become durable (from
        its append, group commit included), as its batch is settled: no callback per entry."""
        self._writer.observe_append = observe

    @property
    def checkpoint_info(self) -> tuple[int, float]:
        """The newest checkpoint's seq and when it was written (time.monotonic())."""
        return self._writer.last_checkpoint_seq, self._writer.last_checkpoint_at

    async def checkpoint(self) -> int:
        """Write a signed checkpoint now; returns its seq."""
        return await self._writer.request_checkpoint()

    async def seal_segment(self) -> int:
        """Seal the active segment now, as rotation does (it ends with a signed checkpoint),
        so it can be archived; returns the seq of a checkpoint written after the seal.
        For the audit drill, whose entries must reach the archive within a set time."""
        return await self._writer.request_seal()

    async def close(self) -> None:
        """Write ``stop`` and a final checkpoint, then stop; the active segment is not sealed."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
        try:
            await self.append("stop", {"journal": self.journal_id, "pid": os.getpid()})
            await self.checkpoint()
        except Exception as e:
            log.error("journal: could not write the final entries: %s", e)
        await self._shutdown()

    async def _shutdown(self) -> None:
        self._closed = True
        await self._writer.stop()
        await self._publisher.close()
        self._lock.release()

    # -- checkpoint timer --------------------------------------------------------------

    async def _tick(self) -> None:
        settings = self.settings
        writer = self._writer
        while True:
            await asyncio.sleep(settings.checkpoint_interval_s)
            if writer.refusal() is not None:
                continue
            idle = time.monotonic() - writer.last_checkpoint_at
            if (writer.seq > writer.last_checkpoint_seq or idle >= settings.heartbeat_interval_s
                    or writer.rotation_due()):
                writer.request_checkpoint().add_done_callback(_checkpoint_done)


def _own(fields: dict[str, object], handed_over: bool = False) -> dict[str, object]:
    """A dict the writer may stamp: a copy, so later changes by the caller cannot alter the
    entry, unless the caller handed this one over."""
    if not RESERVED_FIELDS.isdisjoint(fields):
        raise ValueError(f"journal fields may not include {sorted(RESERVED_FIELDS)}")
    return fields if handed_over else dict(fields)


def _checkpoint_done(future: asyncio.Future[int]) -> None:
    # The writer already logged why; retrieving the exception keeps asyncio quiet.
    if not future.cancelled():
        future.exception()


def _version() -> str:
    try:
        return metadata.version("phigate")
    except metadata.PackageNotFoundError:
        return "unknown"
