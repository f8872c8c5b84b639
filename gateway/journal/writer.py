"""The group-commit writer: the only code that appends to the journal.

Everything appended during one event-loop tick is encoded at the tick's end, on
the loop (:mod:`.batch`: seq, time, ``prev``, the bytes, the chain hash), and
handed to one long-lived thread that only writes: one positioned write per batch
of ticks, made durable with it (``RWF_DSYNC``: write and fdatasync in one call)
with ``durability: fsync``; then it wakes the event loop once, and a single
callback there resolves the batch's futures, so an acknowledged seq is on disk.
The thread takes the GIL about twice per batch (to wake, and after the write to
report) and never to encode. The event loop never waits for the disk: while
the thread writes, sessions keep relaying and the next batch accumulates, so 32
sessions share one sync instead of paying 32. Only with ``durability: write``,
while the thread is idle and no checkpoint or rotation is due, is a batch's
single pwrite (into the page cache) made on the loop: two GIL hand-offs cost more.

Segments are preallocated with zeros ahead of the data (see :mod:`.segments`),
so a synced write need not update the file's size. A failed write is undone (the
segment is truncated back to the last good batch) so the chain on disk never
holds entries nobody was told about; batches encoded after it no longer continue
the disk and are refused too, the loop's tip is rewound, and the journal reports
itself broken until a later write succeeds. Rotation is decided on the loop (the
rotation checkpoint ends a batch marked ``seal``); the thread seals and opens the
next segment after writing it. :class:`..journal.Journal` drives it.
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
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.errors import JournalFull, JournalWriteFailed, StatementRefused

from . import segments
from .batch import CHECKPOINT, Batch, Done, Pending, Tip
from .canonical import TimeFormatter
from .checkpoints import Checkpoint
from .settings import JournalSettings

__all__ = ["BATCH_SIZE_BOUNDS", "CHECKPOINT", "ChainPosition", "Pending", "Writer"]

log = logging.getLogger("phigate.journal")

# Bounds one write (and the time its sessions wait); the rest waits for the next batch.
MAX_BATCH = 4096
# While broken, refuse at once rather than touch the disk for every statement: a full
# disk fails in microseconds, but a failing one can hang each fsync for seconds.
RETRY_AFTER_S = 0.1
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

# At most this long an entry nobody waits for (an outcome) waits for one that somebody does.
RIDE_ALONG_S = 0.05
# In ``durability: write``, a batch is written on the event loop when this much of the
# preallocated zeros is left (so the write never extends the file there).
INLINE_ROOM = 256 * 1024
BATCH_SIZE_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # group-commit histogram buckets


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
        self._clock = clock_ns
        self._on_checkpoint = on_checkpoint
        self._fmt = TimeFormatter()
        self._sync_every_batch = settings.durability == "fsync"
        self._step = min(segments.PREALLOCATE_STEP, settings.segment_max_bytes)
        # The loop's end of the chain (what the next batch continues); the disk's is below.
        self._tip = Tip(position.journal_id, key, seq=position.last_seq, head=position.head,
                        size=position.active_size, started_ns=position.active_started_ns)
        # -- the disk's state: written by the thread (or by the loop while it is idle) --
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
        # Set when a failed batch could not be cut off the segment: no write may
        # follow until it is, or the chain on disk would hold a torn batch.
        self._truncate_to: int | None = None
        # Data written without a sync since the last one: the next sync must be a
        # whole-file fdatasync, since a synced write only covers its own range.
        self._unsynced = True  # the previous run's last writes may still be in the cache
        # -- the loop's --
        self.last_checkpoint_seq = 0
        self.last_checkpoint_at = time.monotonic()
        self._queued_checkpoint: asyncio.Future[int] | None = None
        self._seal_requested = False
        # Appends made during the current event-loop tick, handed over together at its end:
        # one wake-up of the thread per tick, however many sessions appended in it.
        self._tick: list[Pending] = []
        self._handing_over = False
        # Armed while an entry nobody waits for is queued; left to fire (at most every
        # RIDE_ALONG_S) rather than cancelled and re-armed for every statement.
        self._ride_timer: asyncio.TimerHandle | None = None
        # Told how long each statement entry took to become durable (metrics), per batch.
        self.observe_append: Callable[[float], None] | None = None
        # Ticks handed to the thread and ticks it has finished (each written by one side).
        self._handed = 0
        self._served = 0
        # What the thread takes, in order; None (after stop) tells it to finish.
        self._queue: queue.SimpleQueue[list[Batch] | None] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._serve, name="phigate-journal-writer",
                                        daemon=True)
        # The thread runs: set as it starts, cleared as it ends (``submit`` reads it for every
        # entry; ``Thread.is_alive`` takes a lock each time).
        self._serving = False
        self._stopping = False
        self._broken: type[StatementRefused] | None = None
        self._broken_at = 0.0
        self._poisoned = False
        self._lost = 0

    # -- driven by Journal (on the event loop) -----------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._open_segment)
        self._tip.size = self._size
        if self._tip.started_ns is None:
            self._tip.started_ns = self._clock()
        # A daemon thread: if the gateway dies without closing the journal, acknowledged
        # entries are already on disk and nothing here must keep the process alive.
        self._serving = True
        self._thread.start()

    def submit(self, pending: Pending) -> None:
        if self._stopping or not self._serving:
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
            self._ride_timer = loop.call_later(RIDE_ALONG_S, self._ride_along_due)

    def _ride_along_due(self) -> None:
        self._ride_timer = None
        if not self._handing_over:
            self._hand_over()

    def _hand_over(self) -> None:
        self._handing_over = False
        if not self._tick:
            return
        tick, self._tick = self._tick, []
        if self._poisoned:
            _fail(tick, JournalWriteFailed("journal writer failed"))
            return
        failed: list[tuple[Pending, BaseException]] = []
        try:
            batches = self._encode(tick, failed)
        except Exception:
            log.exception("journal writer failed; refusing all statements")
            self._poisoned = True
            _fail(tick, JournalWriteFailed("journal writer failed"))
            return
        for pending, error in failed:
            if pending.future is not None and not pending.future.done():
                pending.future.set_exception(error)
        if not batches:
            return
        if self._inline_ok(batches):
            self._settle(self._process(batches, inline=True))
            return
        self._handed += 1
        self._queue.put(batches)

    def _encode(self, tick: list[Pending], failed: list[tuple[Pending, BaseException]]
                ) -> list[Batch]:
        """The tick's lines after the tip; first the rotation checkpoint, when one is due."""
        now = self._clock()
        stamp = self._fmt(now)
        tip = self._tip
        batches = []
        if self._rotation_due(now):
            self._seal_requested = False
            rotation = tip.encode([Pending(CHECKPOINT, None, None)], stamp, failed)
            rotation.seal = True
            batches.append(rotation)
            tip.size, tip.started_ns = 0, now
        queued = self._queued_checkpoint
        if queued is not None and any(p.future is queued for p in tick):
            self._queued_checkpoint = None  # signed now: a later request queues a new one
        batch = tip.encode(tick, stamp, failed)
        if batch.accepted:
            batches.append(batch)
        return batches

    def _inline_ok(self, batches: list[Batch]) -> bool:
        """``durability: write`` without a checkpoint, rotation or repair due: the batch is
        one pwrite into the page cache, cheaper on the loop than two GIL hand-offs. Only
        while the thread has nothing (it then never touches the writer's state)."""
        return (not self._sync_every_batch and self._handed == self._served
                and self._fd is not None and self._truncate_to is None
                and self._allocated - self._size >= INLINE_ROOM and len(batches) == 1
                and not batches[0].signed and len(batches[0].accepted) <= 64)

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

    def _rotation_due(self, now_ns: int) -> bool:
        tip = self._tip
        if tip.size >= self._settings.segment_max_bytes or (
                self._seal_requested and tip.size > 0):
            return True
        started = tip.started_ns
        return (tip.size > 0 and started is not None
                and now_ns - started >= self._settings.segment_max_age_s * 1e9)

    async def stop(self) -> None:
        """Write what is queued, then stop; the active segment stays open for the next run."""
        if self._stopping:
            return
        self._stopping = True
        if self._ride_timer is not None:
            self._ride_timer.cancel()
            self._ride_timer = None
        if self._thread.is_alive():
            self._hand_over()
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
        else:
            await asyncio.to_thread(self._close_fd)

    def _settle(self, done: Done) -> None:
        """On the event loop, once per batch: tell every waiting session how it went."""
        self._tip.rewind(done)
        observe = self.observe_append
        now = time.perf_counter() if observe is not None else 0.0
        for pending, entry_seq in done.accepted:
            future = pending.future
            if future is not None and not future.done():
                future.set_result(entry_seq)
                if observe is not None and pending.type == "statement":
                    observe(now - pending.queued_at)
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
        try:
            self._serve_queue()
        finally:
            self._serving = False

    def _serve_queue(self) -> None:
        take, waiting = self._queue.get, self._queue.empty
        while True:
            handed = take()
            batches: list[Batch] = []
            ticks = entries = 0
            while handed is not None:
                batches += handed  # everything pending: ticks handed over since the last write
                ticks += 1
                entries += sum(len(b.accepted) for b in handed)
                if entries >= MAX_BATCH or waiting():
                    break
                handed = take()
            done = self._process(batches) if batches else None
            # Served before the loop hears of it: else the loop, woken by the hand-back, may
            # still see the thread busy and hand it the next batch, and the next (``write``).
            self._served += ticks
            if done is not None:
                self._hand_back(done)
            if handed is None:
                break
        self._close_fd()

    def _hand_back(self, done: Done) -> None:
        loop = self._loop
        if loop is None or not (done.failed or done.signed or done.rewind or any(
                pending.future is not None for pending, _ in done.accepted)):
            return  # nobody to tell: no wake-up of the event loop
        try:
            loop.call_soon_threadsafe(self._settle, done)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more

    def _process(self, batches: list[Batch], *, inline: bool = False) -> Done:
        done = Done()
        if self._poisoned:
            for batch in batches:
                _fail_into(done, batch, JournalWriteFailed("journal writer failed"))
            return done
        group: list[Batch] = []
        try:
            for batch in batches:
                group.append(batch)
                if batch.seal:
                    # The rotation checkpoint ends this segment; what follows starts the next.
                    if self._commit(group, done, inline=inline):
                        self._seal()
                    group = []
            if group:
                self._commit(group, done, inline=inline)
        except Exception:
            # A bug, not a disk problem: fail closed until someone restarts us.
            log.exception("journal writer failed; refusing all statements")
            self._poisoned = True
            settled = {id(p) for p, _ in done.accepted} | {id(p) for p, _ in done.failed}
            error = self.refusal() or JournalWriteFailed("journal writer failed")
            for batch in batches:
                done.failed.extend((p, _copy(error)) for p, _ in batch.accepted
                                   if id(p) not in settled)
        return done

    def _commit(self, group: list[Batch], done: Done, *, inline: bool = False) -> bool:
        """Write the batches of ``group`` that continue the disk, as one write."""
        seq, head = self.seq, self._head
        written: list[Batch] = []
        for batch in group:
            if batch.first_seq == seq + 1 and batch.prev == head:
                written.append(batch)
                seq, head = batch.seq, batch.head
            else:  # encoded after a batch that failed: it chains past lines not on disk
                self._refuse(batch, done)
        if not written:
            return False
        data = written[0].data if len(written) == 1 else b"".join(b.data for b in written)
        # Only acknowledged entries (statements) need a sync before their answer; queued
        # outcomes ride along with the next synced batch or checkpoint, in order.
        sync = any(b.signed for b in written) or (
            self._sync_every_batch and any(b.waited for b in written))
        try:
            self._write(data, sync, inline=inline)
        except OSError as e:
            self._set_broken(e)
            for batch in written:
                self._refuse(batch, done)
            return False
        count = 0
        for batch in written:
            done.accepted.extend(batch.accepted)
            done.signed.extend(batch.signed)
            count += len(batch.accepted)
        self.seq, self._head = seq, head
        self._size += len(data)
        self.batches += 1
        self.batch_sizes[bisect.bisect_left(BATCH_SIZE_BOUNDS, count)] += 1
        self.entries += count
        if self._broken is not None:
            log.warning("journal is writable again at seq %d; %d queued entries (outcomes) "
                        "were lost while it was not", seq, self._lost)
            self._broken = None
            self._lost = 0
        return True

    def _refuse(self, batch: Batch, done: Done) -> None:
        """Tell ``batch``'s sessions it was not written; the loop rewinds to the disk."""
        error = self._broken or JournalWriteFailed
        for pending, _ in batch.accepted:
            if pending.future is None:
                self._lost += 1
            else:
                done.failed.append((pending, _refusal(error)))
        if done.rewind is None:
            done.rewind, done.rewind_epoch = (self.seq, self._head, self._size), batch.epoch

    def _set_broken(self, e: OSError) -> None:
        full = e.errno in _FULL_ERRNOS
        kind: type[StatementRefused] = JournalFull if full else JournalWriteFailed
        if self._broken is None:
            log.error("journal write failed at seq %d (%s); refusing statements until it "
                      "can be written", self.seq + 1, e)
        self._broken = kind
        self._broken_at = time.monotonic()

    def _seal(self) -> None:
        try:
            self._seal_and_advance()
        except OSError as e:
            self._set_broken(e)

    # -- disk calls (the thread; start-up via asyncio.to_thread) --------------------------

    def _open_segment(self) -> None:
        if self._path is None:
            self._path = segments.create_segment(self._dir, self.seq + 1)
            self._size = 0
            self._tip.started_ns = self._clock()
        self._fd, _, self._allocated = segments.open_segment(self._path)

    def _write(self, data: bytes, sync: bool, *, inline: bool = False) -> None:
        if self._truncate_to is not None:
            self._cut_back(self._truncate_to)
        if self._fd is None:
            self._reopen()
        fd = self._require_fd()
        start = self._size
        # A synced write covers only its own bytes: after unsynced ones, sync the file.
        whole_file = sync and self._unsynced
        try:
            # The thread keeps INLINE_ROOM of zeros ahead, so that the loop's own writes
            # (``durability: write``) resume after this one instead of waiting for the
            # preallocation to run out.
            self._allocated = segments.write_at(
                fd, data, start, self._allocated, self._step, sync=sync and not whole_file,
                ahead=0 if inline or self._sync_every_batch else INLINE_ROOM)
            if whole_file:
                os.fdatasync(fd)
        except OSError:
            # Undo the partial batch: its sessions are told it failed, so it must
            # not stay on disk (and later entries must not chain past it).
            self._truncate_to = start
            self._unsynced = True
            if inline:
                raise  # cut back (it fdatasyncs) by the thread, before its next write
            try:
                self._cut_back(start)
            except OSError as cut:
                log.error("could not cut a failed batch off the journal: %s", cut)
            raise
        self._unsynced = not sync

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


def _fail_into(done: Done, batch: Batch, error: BaseException) -> None:
    for pending, _ in batch.accepted:
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
