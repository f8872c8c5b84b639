"""Journal lines made on the event loop: the tip of the chain and one tick's batch.

The writer encodes everything appended during one event-loop tick at once, on the
loop (seq, time, ``prev``, the canonical bytes, the chain hash, a checkpoint's
signature), so its disk thread only writes bytes: it takes the GIL once per batch
to wake and once to report, and never holds it while encoding. :class:`Tip` is
where the chain will stand once every batch handed to the thread is written; a
batch records which line it continues (``first_seq``, ``prev``) so the thread can
refuse one that no longer continues the disk (it was encoded after a batch that
failed), and the loop then rewinds its tip to what is really on disk.
:class:`..writer.Writer` drives both.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import checkpoints
from .canonical import encode_line
from .chain import link
from .checkpoints import Checkpoint

CHECKPOINT = "checkpoint"


@dataclass(slots=True)
class Pending:
    """One append waiting for the writer; ``fields`` None means "sign a checkpoint here"."""

    type: str
    fields: dict[str, object] | None
    future: asyncio.Future[int] | None
    queued_at: float = 0.0  # time.perf_counter() when appended, for an awaited entry


@dataclass(slots=True)
class Batch:
    """Lines encoded together, continuing the line ``first_seq - 1`` whose hash is ``prev``."""

    data: bytes
    first_seq: int
    prev: str
    seq: int  # of its last line
    head: str  # the hash of its last line
    accepted: list[tuple[Pending, int]]
    signed: list[Checkpoint]
    waited: bool  # somebody awaits one of its entries (so it is synced in fsync mode)
    epoch: int  # the tip's epoch when it was encoded (see Tip.rewind)
    seal: bool = False  # seal the segment after it (it ends with the rotation checkpoint)


@dataclass(slots=True)
class Done:
    """What one pass of the thread settles on the event loop, in a single callback."""

    accepted: list[tuple[Pending, int]] = field(default_factory=list)
    failed: list[tuple[Pending, BaseException]] = field(default_factory=list)
    signed: list[Checkpoint] = field(default_factory=list)
    # After a failed write: what is on disk (seq, head, size), and the epoch that failed.
    rewind: tuple[int, str, int] | None = None
    rewind_epoch: int = -1


class Tip:
    """The loop's end of the chain: the next line's seq and ``prev``, the segment's size.

    Owned by the event loop. After a write fails, every batch encoded from the old tip
    is refused by the thread; :meth:`rewind` (once per failure: the epoch changes) puts
    the tip back where the disk ends.
    """

    __slots__ = ("seq", "head", "size", "started_ns", "epoch", "_journal", "_key")

    def __init__(self, journal_id: str, key: Ed25519PrivateKey, *, seq: int, head: str,
                 size: int, started_ns: int | None) -> None:
        self._journal = journal_id
        self._key = key
        self.seq = seq
        self.head = head
        self.size = size
        self.started_ns = started_ns
        self.epoch = 0

    def encode(self, entries: list[Pending], stamp: str,
               failed: list[tuple[Pending, BaseException]]) -> Batch:
        """Stamp and encode ``entries`` after the tip and advance it; an entry that cannot
        be encoded goes to ``failed`` without spending a seq."""
        seq = first = self.seq
        head = prev = self.head
        parts: list[bytes] = []
        accepted: list[tuple[Pending, int]] = []
        signed: list[Checkpoint] = []
        waited = False
        for pending in entries:
            cp = None
            if pending.fields is None:
                cp = checkpoints.sign(self._key, journal=self._journal, seq=seq + 1,
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
                failed.append((pending, TypeError(
                    f"journal entry {pending.type!r} cannot be encoded as JSON: {e}")))
                continue
            seq += 1
            head = link(line[:-1])
            parts.append(line)
            accepted.append((pending, seq))
            if cp is not None:
                signed.append(cp)
            if pending.future is not None:
                waited = True
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.seq, self.head = seq, head
        self.size += len(data)
        return Batch(data, first + 1, prev, seq, head, accepted, signed, waited, self.epoch)

    def rewind(self, done: Done) -> None:
        """After a failed write: continue from what is on disk (once per failure)."""
        if done.rewind is None or done.rewind_epoch != self.epoch:
            return
        self.seq, self.head, self.size = done.rewind
        self.epoch += 1
