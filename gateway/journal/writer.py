"""The group-commit writer: the only code that appends to the journal.

One long-lived thread takes everything pending, stamps each entry with seq,
time and ``prev``, encodes the batch, and makes it one write and (per the
durability setting) one fdatasync; then it wakes the event loop once, and a
single callback there resolves the batch's futures, so an acknowledged seq is
on disk. The event loop never calls fdatasync: while the thread waits on the
disk, sessions keep relaying and the next batch accumulates, so 32 sessions
share one fsync instead of paying 32. Only with ``durability: write``, while
the thread is idle and no checkpoint or rotation is due, is a batch's single
pwrite (into the page cache) made on the loop: two GIL hand-offs cost more.

Segments are preallocated with zeros ahead of the data (see :mod:`.segments`),
so the fdatasync after a write need not update the file's size. A failed
write is undone (the segment is truncated back to the last good batch) so the
chain on disk never holds entries nobody was told about, and the journal
reports itself broken until a later write succeeds. Rotation and sealing
happen in the thread too, between batches. :class:`..journal.Journal` drives it.
"""

from __future__ import annotations

import asyncio
import bisect
import errno
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.errors import JournalFull, JournalWriteFailed, StatementRefused

from . import checkpoints, segments
from .canonical import TimeFormatter, encode_line
from .chain import link
from .checkpoints import Checkpoint
from .settings import JournalSettings

log = logging.getLogger("phigate.journal")

# Bounds one write (and the time its sessions wait); the rest waits for the next batch.
MAX_BATCH = 4096
# While broken, refuse at once rather than touch the disk for every statement: a full
# disk fails in microseconds, but a failing one can hang each fsync for seconds.
RETRY_AFTER_S = 0.1
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

CHECKPOINT = "checkpoint"
# At most this long an entry nobody waits for (an outcome) waits for one that somebody does.
RIDE_ALONG_S = 0.05
# In ``durability: write``, a batch is written on the event loop when this much of the
# preallocated zeros is left (so the write never extends the file there).
INLINE_ROOM = 256 * 1024
BATCH_SIZE_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # group-commit histogram buckets


@dataclass(slots=True)
class Pending:
    """One append waiting for the writer; ``fields`` None means "sign a checkpoint here"."""

    type: str
    fields: dict[str, object] | None
    future: asyncio.Future[int] | None


@dataclass(slots=True)
class _Done:
    """What one pass of the thread settles on the event loop, in a single callback."""

    accepted: list[tuple[Pending, int]] = field(default_factory=list)
    failed: list[tuple[Pending, BaseException]] = field(default_factory=list)
    signed: list[Checkpoint] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ChainPosition:
    """Where the journal stands when the writer takes over (from recovery)."""

    journal_id: str
    last_seq: int
    head: str
    active: Path | None
    active_size: int
    active_started_ns: int | None


class Writer:
    def __init__(self, settings: JournalSettings, position: ChainPosition,
                 key: Ed25519PrivateKey, *, clock_ns: Callable[[], int],
                 on_checkpoint: Callable[[Checkpoint], None]) -> None:
        self._settings = settings
        self._dir = settings.dir
        self._journal_id = position.journal_id
        self._key = key
        self._clock = clock_ns
        self._on_checkpoint = on_checkpoint
        self._fmt = TimeFormatter()
        self._sync_every_batch = settings.durability == "fsync"
        self._step = min(segments.PREALLOCATE_STEP, settings.segment_max_bytes)
        self.seq = position.last_seq
        # Counters for metrics and the benchmark: committed batches and entries this run.
        self.batches = 0
        self.entries = 0
        # How many batches had at most BATCH_SIZE_BOUNDS[i] entries (last: more), for metrics.
        self.batch_sizes = [0] * (len(BATCH_SIZE_BOUNDS) + 1)
        self._head = position.head
        self._path = position.active
        self._fd: int | None = None
        self._size = position.active_size  # end of data: where the next batch is written
        self._allocated = 0  # file size: data plus the zero-filled preallocation
        self._started_ns = position.active_started_ns
        # Set when a failed batch could not be cut off the segment: no write may
        # follow until it is, or the chain on disk would hold a torn batch.
        self._truncate_to: int | None = None
        self.last_checkpoint_seq = 0
        self.last_checkpoint_at = time.monotonic()
        self._queued_checkpoint: asyncio.Future[int] | None = None
        # Set on the loop by request_seal, cleared by the thread when it seals.
        self._seal_requested = False
        # Appends made during the current event-loop tick, handed over together at its end:
        # one wake-up of the thread per tick, however many sessions appended in it.
        self._tick: list[Pending] = []
        self._handing_over = False
        self._ride_timer: asyncio.TimerHandle | None = None
        # Ticks handed to the thread and ticks it has finished (each written by one side).
        self._handed = 0
        self._served = 0
        # What the thread takes, in order; None (after stop) tells it to finish.
        self._queue: queue.SimpleQueue[list[Pending] | None] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._serve, name="phigate-journal-writer",
                                        daemon=True)
        self._stopping = False
        self._broken: type[StatementRefused] | None = None
        self._broken_at = 0.0
        self._poisoned = False
        self._lost = 0

    # -- driven by Journal (on the event loop) -----------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._open_segment)
        # A daemon thread: if the gateway dies without closing the journal, acknowledged
        # entries are already on disk and nothing here must keep the process alive.
        self._thread.start()

    def submit(self, pending: Pending) -> None:
        if self._stopping or not self._thread.is_alive():
            _fail([pending], JournalWriteFailed("the journal is closed"))
            return
        tick = self._tick
        tick.append(pending)
        loop = self._loop
        if loop is None or self._handing_over:
            return
        # An entry nobody waits for (an outcome) rides with the next one somebody does, or
        # goes after RIDE_ALONG_S: one thread wake-up and one write per statement, not two.
        if pending.future is not None:
            self._handing_over = True
            loop.call_soon(self._hand_over)
        elif self._ride_timer is None:
            self._ride_timer = loop.call_later(RIDE_ALONG_S, self._hand_over)

    def _hand_over(self) -> None:
        self._handing_over = False
        if self._ride_timer is not None:
            self._ride_timer.cancel()
            self._ride_timer = None
        if self._tick:
            tick, self._tick = self._tick, []
            if self._inline_ok(tick):
                self._settle(self._process(tick, inline=True))
                return
            self._handed += 1
            self._queue.put(tick)

    def _inline_ok(self, tick: list[Pending]) -> bool:
        """``durability: write`` without a checkpoint, rotation or repair due: the batch is
        one pwrite into the page cache, cheaper on the loop than two GIL hand-offs. Only
        while the thread has nothing (it then never touches the writer's state)."""
        return (not self._sync_every_batch and self._handed == self._served
                and self._fd is not None and self._truncate_to is None
                and self._allocated - self._size >= INLINE_ROOM and len(tick) <= 64
                and all(p.fields is not None for p in tick)
                and not self._rotation_due(self._clock()))

    def request_checkpoint(self) -> asyncio.Future[int]:
        """Queue a checkpoint, or return the one already queued."""
        queued = self._queued_checkpoint
        if queued is not None and not queued.done():
            return queued
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queued_checkpoint = future
        self.submit(Pending(CHECKPOINT, None, future))
        return future

    def request_seal(self) -> asyncio.Future[int]:
        """Seal the active segment (if it holds anything) before a checkpoint written after."""
        self._seal_requested = True
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.submit(Pending(CHECKPOINT, None, future))
        return future

    def refusal(self) -> StatementRefused | None:
        """The error to refuse an append with right now, or None to try the disk."""
        if self._poisoned:
            return JournalWriteFailed("the journal writer failed; restart the gateway",
                                      hint="the gateway log has the details")
        if self._stopping:
            return JournalWriteFailed("the journal is closed")
        if self._broken is not None and time.monotonic() - self._broken_at < RETRY_AFTER_S:
            return _refusal(self._broken)
        return None

    @property
    def writable(self) -> bool:
        return self._broken is None and not self._poisoned and not self._stopping

    def rotation_due(self) -> bool:
        return self._rotation_due(self._clock())

    async def stop(self) -> None:
        """Write what is queued, then stop; the active segment stays open for the next run."""
        if self._stopping:
            return
        self._stopping = True
        if self._thread.is_alive():
            self._hand_over()
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
        else:
            await asyncio.to_thread(self._close_fd)

    def _settle(self, done: _Done) -> None:
        """On the event loop, once per batch: tell every waiting session how it went."""
        for pending, entry_seq in done.accepted:
            future = pending.future
            if future is not None and not future.done():
                future.set_result(entry_seq)
        for pending, error in done.failed:
            future = pending.future
            if future is not None and not future.done():
                future.set_exception(error)
        for cp in done.signed:
            self.last_checkpoint_seq = cp.seq
            self.last_checkpoint_at = time.monotonic()
            self._on_checkpoint(cp)

    # -- the writer thread -------------------------------------------------------------

    def _serve(self) -> None:
        take, waiting = self._queue.get, self._queue.empty
        while True:
            handed = take()
            batch: list[Pending] = []
            ticks = 0
            while handed is not None:
                batch += handed  # everything pending: ticks handed over since the last batch
                ticks += 1
                if len(batch) >= MAX_BATCH or waiting():
                    break
                handed = take()
            if batch:
                self._hand_back(self._process(batch))
            self._served += ticks
            if handed is None:
                break
        self._close_fd()

    def _hand_back(self, done: _Done) -> None:
        loop = self._loop
        if loop is None or not (done.failed or done.signed or any(
                pending.future is not None for pending, _ in done.accepted)):
            return  # nobody to tell: no wake-up of the event loop
        try:
            loop.call_soon_threadsafe(self._settle, done)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more

    def _process(self, batch: list[Pending], *, inline: bool = False) -> _Done:
        done = _Done()
        if self._poisoned:
            _fail_into(done, batch, JournalWriteFailed("journal writer failed"))
            return done
        try:
            if self._rotation_due(self._clock()):
                self._rotate(done)
            self._commit(batch, done, inline=inline)
        except Exception:
            # A bug, not a disk problem: fail closed until someone restarts us.
            log.exception("journal writer failed; refusing all statements")
            self._poisoned = True
            settled = {id(p) for p, _ in done.accepted} | {id(p) for p, _ in done.failed}
            _fail_into(done, [p for p in batch if id(p) not in settled],
                       self.refusal() or JournalWriteFailed("journal writer failed"))
        return done

    def _commit(self, batch: list[Pending], done: _Done, *, inline: bool = False) -> bool:
        data, seq, head, accepted, signed = self._encode(batch, done)
        if not accepted:
            return True
        # Only acknowledged entries (statements) need fdatasync before their answer; queued
        # outcomes ride along with the next synced batch or checkpoint, in order.
        sync = bool(signed) or (self._sync_every_batch
                                and any(p.future is not None for p, _ in accepted))
        try:
            self._write(data, sync, inline=inline)
        except OSError as e:
            self._set_broken(e)
            error = self._broken or JournalWriteFailed
            for pending, _ in accepted:
                if pending.future is None:
                    self._lost += 1
                else:
                    done.failed.append((pending, _refusal(error)))
            return False
        self.seq, self._head = seq, head
        self._size += len(data)
        self.batches += 1
        self.batch_sizes[bisect.bisect_left(BATCH_SIZE_BOUNDS, len(accepted))] += 1
        self.entries += len(accepted)
        if self._broken is not None:
            log.warning("journal is writable again at seq %d; %d queued entries (outcomes) "
                        "were lost while it was not", seq, self._lost)
            self._broken = None
            self._lost = 0
        done.accepted.extend(accepted)
        done.signed.extend(signed)
        return True

    def _encode(self, batch: list[Pending], done: _Done) -> tuple[
            bytes, int, str, list[tuple[Pending, int]], list[Checkpoint]]:
        seq, head = self.seq, self._head
        clock, fmt = self._clock, self._fmt
        parts: list[bytes] = []
        accepted: list[tuple[Pending, int]] = []
        signed: list[Checkpoint] = []
        for pending in batch:
            stamp = fmt(clock())
            cp = None
            if pending.fields is None:
                if pending.future is self._queued_checkpoint:
                    self._queued_checkpoint = None
                cp = checkpoints.sign(self._key, journal=self._journal_id, seq=seq + 1,
                                      head=head, time=stamp)
                entry = cp.line_fields()
            else:
                entry = pending.fields  # the writer's own copy (Journal._own)
            entry["seq"] = seq + 1
            entry["time"] = stamp
            entry["type"] = pending.type
            entry["prev"] = head
            try:
                line = encode_line(entry)
            except (TypeError, ValueError) as e:
                done.failed.append((pending, TypeError(
                    f"journal entry {pending.type!r} cannot be encoded as JSON: {e}")))
                continue
            seq += 1
            head = link(line[:-1])
            parts.append(line)
            accepted.append((pending, seq))
            if cp is not None:
                signed.append(cp)
        return b"".join(parts), seq, head, accepted, signed

    def _set_broken(self, e: OSError) -> None:
        full = e.errno in _FULL_ERRNOS
        kind: type[StatementRefused] = JournalFull if full else JournalWriteFailed
        if self._broken is None:
            log.error("journal write failed at seq %d (%s); refusing statements until it "
                      "can be written", self.seq + 1, e)
        self._broken = kind
        self._broken_at = time.monotonic()

    # -- rotation ------------------------------------------------------------------------

    def _rotation_due(self, now_ns: int) -> bool:
        if self._size >= self._settings.segment_max_bytes or (
                self._seal_requested and self._size > 0):
            return True
        started = self._started_ns
        return (self._size > 0 and started is not None
                and now_ns - started >= self._settings.segment_max_age_s * 1e9)

    def _rotate(self, done: _Done) -> None:
        """End the segment with a checkpoint, seal it, and start the next one."""
        self._seal_requested = False
        if not self._commit([Pending(CHECKPOINT, None, None)], done):
            return
        try:
            self._seal_and_advance()
        except OSError as e:
            self._set_broken(e)

    # -- disk calls (the thread; start-up via asyncio.to_thread) --------------------------

    def _open_segment(self) -> None:
        if self._path is None:
            self._path = segments.create_segment(self._dir, self.seq + 1)
            self._size = 0
            self._started_ns = self._clock()
        self._fd, _, self._allocated = segments.open_segment(self._path)
        if self._started_ns is None:
            self._started_ns = self._clock()

    def _write(self, data: bytes, sync: bool, *, inline: bool = False) -> None:
        if self._truncate_to is not None:
            self._cut_back(self._truncate_to)
        if self._fd is None:
            self._reopen()
        fd = self._require_fd()
        start = self._size
        try:
            self._allocated = segments.write_at(fd, data, start, self._allocated, self._step)
            if sync:
                os.fdatasync(fd)
        except OSError:
            # Undo the partial batch: its sessions are told it failed, so it must
            # not stay on disk (and later entries must not chain past it).
            self._truncate_to = start
            if inline:
                raise  # cut back (it fdatasyncs) by the thread, before its next write
            try:
                self._cut_back(start)
            except OSError as cut:
                log.error("could not cut a failed batch off the journal: %s", cut)
            raise

    def _cut_back(self, size: int) -> None:
        fd = self._require_fd()
        segments.trim(fd, size)
        self._allocated = size
        self._truncate_to = None

    def _require_fd(self) -> int:
        if self._fd is None:
            raise OSError(errno.EBADF, "no journal segment is open")
        return self._fd

    def _reopen(self) -> None:
        # After a rotation, or one whose new segment could not be created.
        try:
            self._path = segments.create_segment(self._dir, self.seq + 1)
        except FileExistsError:
            self._path = self._dir / segments.segment_name(self.seq + 1)
        self._fd, self._size, self._allocated = segments.open_segment(self._path)
        self._started_ns = self._clock()

    def _seal_and_advance(self) -> None:
        fd, path = self._require_fd(), self._path
        self._fd = None
        if path is not None:
            segments.seal(fd, path, self._size, immutable=self._settings.immutable)
            log.info("journal segment %s sealed at seq %d", path.name, self.seq)
        self._reopen()

    def _close_fd(self) -> None:
        """Trim the preallocated zeros (a closed segment ends with its last line) and close."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._truncate_to is None and self._allocated > self._size:
                segments.trim(fd, self._size)
        except OSError as e:
            log.error("could not trim the journal segment on close: %s", e)
        finally:
            os.close(fd)


def _refusal(kind: type[StatementRefused]) -> StatementRefused:
    # A fresh exception per session: one shared instance would collect every
    # awaiting task's traceback.
    if kind is JournalFull:
        return JournalFull("the audit journal's disk is full; the statement was not run",
                           hint="free space on the journal volume")
    return JournalWriteFailed("the audit journal cannot be written; the statement was not run",
                              hint="the gateway log has the details")


def _fail_into(done: _Done, batch: list[Pending], error: BaseException) -> None:
    for pending in batch:
        done.failed.append((pending, _copy(error)))


def _fail(batch: list[Pending], error: BaseException) -> None:
    """Fail every append in ``batch`` that somebody waits for (on the event loop)."""
    for pending in batch:
        future = pending.future
        if future is not None and not future.done():
            # Each waiter gets its own exception instance (see _refusal).
            future.set_exception(_copy(error))


def _copy(error: BaseException) -> BaseException:
    if isinstance(error, StatementRefused):
        return type(error)(error.message, hint=error.hint, detail=error.detail)
    return error
