"""What the journal looks like when the gateway starts, and repairing a torn tail.

Before the writer takes over, :func:`inspect` checks the cheap-but-telling
parts of the journal: every segment boundary (names, seqs and links between
consecutive files), every line of the newest segment(s), and that the chain
still holds the checkpoint recorded in ``checkpoint.json``. A last line with
no newline is what a crash mid-write leaves; :func:`quarantine` moves it to a
file next to the segment (never deleting it) and the journal records a
``recovery`` entry. Anything else is tampering: :class:`JournalCorrupt`, and
the gateway refuses to start. Driven by ``Journal.open``; blocking, so it runs
in a thread.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import segments
from .chain import link
from .checkpoints import Checkpoint, read_checkpoint_file
from .errors import VERIFY_HINT, JournalCorrupt
from .scan import scan_lines
from .segments import SegmentFile
from .stitch import ChainCheck, LineBefore, Tampered


@dataclass(frozen=True, slots=True)
class TornTail:
    segment: Path
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class JournalState:
    """The journal as found; ``journal_id`` None means there is no journal yet."""

    journal_id: str | None
    last_seq: int
    head: str | None
    active: Path | None
    active_size: int
    active_started_ns: int | None
    torn: TornTail | None


EMPTY = JournalState(None, 0, None, None, 0, None, None)


def inspect(directory: Path, key: Ed25519PublicKey) -> JournalState:
    """Check the journal in ``directory`` well enough to append to it safely."""
    try:
        return _inspect(directory, key)
    except Tampered as e:
        f = e.failure
        raise JournalCorrupt(f"{f.what}; refusing to start: {VERIFY_HINT}", file=f.file,
                             line=f.line, seq=f.seq) from e


def _inspect(directory: Path, key: Ed25519PublicKey) -> JournalState:
    recorded = _recorded_checkpoint(directory, key)
    found = segments.list_segments(directory)
    if not found:
        if recorded is not None:
            raise _corrupt("checkpoint.json exists but there are no segment files")
        return EMPTY
    boundaries = [_Boundary.read(segment) for segment in found]
    _check_boundaries(found, boundaries)
    start = _first_to_scan(found, recorded)
    after = None
    if start > 0:
        prev = boundaries[start - 1]
        if prev.last is None or prev.last_seq is None:
            raise _corrupt("segment has no complete line", file=found[start - 1].name)
        after = LineBefore(prev.last_seq, link(prev.last), found[start - 1].name, None)
    watch = frozenset() if recorded is None else frozenset({recorded.seq})
    check = ChainCheck(key, journal_id=recorded.journal if recorded else None, after=after,
                       watch=watch)
    torn = None
    size = 0
    for segment in found[start:]:
        chunk = scan_lines(segment.path.read_bytes(), key)
        check.add(chunk, segment.name, 1, segment_seq=segment.first_seq)
        # Where the next entry goes: after the last whole line, before the zero tail.
        size = chunk.size - len(chunk.tail)
        if chunk.tail:
            if segment is not found[-1] or segments.is_sealed(segment.path):
                raise _corrupt("sealed segment does not end with a newline", file=segment.name)
            torn = TornTail(segment.path, size, chunk.tail)
    if start == 0:
        check.finish_anchor()
    check.check_recorded(recorded, segments.CHECKPOINT_FILE, rollback=False)
    return _state(found, boundaries[-1], check, torn, size)


def _state(found: list[SegmentFile], boundary: _Boundary, check: ChainCheck,
           torn: TornTail | None, size: int) -> JournalState:
    newest = found[-1]
    sealed = segments.is_sealed(newest.path)
    journal_id = check.journal_id
    if check.last_seq is None and len(found) == 1 and not sealed:
        # Creation crashed before the first entry was complete: a new journal,
        # reusing the (empty or torn) first segment.
        return JournalState(None, 0, None, newest.path, size, None, torn)
    if journal_id is None or check.head is None or check.last_seq is None:
        raise _corrupt("cannot tell which journal this is: no entry names its id",
                       file=newest.name)
    return JournalState(
        journal_id=journal_id, last_seq=check.last_seq, head=check.head,
        active=None if sealed else newest.path, active_size=size,
        active_started_ns=boundary.first_time_ns, torn=torn)


def _recorded_checkpoint(directory: Path, key: Ed25519PublicKey) -> Checkpoint | None:
    try:
        recorded = read_checkpoint_file(directory / segments.CHECKPOINT_FILE)
    except ValueError as e:
        raise _corrupt(f"checkpoint.json is damaged ({e})") from e
    if recorded is not None and not recorded.is_signed_by(key):
        raise _corrupt("checkpoint.json's signature does not verify with the journal key")
    return recorded


def _first_to_scan(found: list[SegmentFile], recorded: Checkpoint | None) -> int:
    """Scan from the segment holding the recorded checkpoint (usually the newest)."""
    newest = len(found) - 1
    if recorded is None:
        return newest
    for index in range(newest, -1, -1):
        if found[index].first_seq <= recorded.seq:
            return index
    return 0


@dataclass(frozen=True, slots=True)
class _Boundary:
    """A segment's first and last complete lines, parsed."""

    first_seq: int | None
    first_prev: object
    first_time_ns: int | None
    last: bytes | None
    last_seq: int | None
    terminated: bool

    @classmethod
    def read(cls, segment: SegmentFile) -> _Boundary:
        first = segments.first_line(segment.path)
        last, _, terminated = segments.last_line(segment.path)
        first_entry = _parse(first, segment.name) if first is not None else {}
        last_entry = _parse(last, segment.name) if last is not None else {}
        first_seq, last_seq = first_entry.get("seq"), last_entry.get("seq")
        return cls(
            first_seq=first_seq if isinstance(first_seq, int) else None,
            first_prev=first_entry.get("prev"),
            first_time_ns=_time_ns(first_entry.get("time")),
            last=last, last_seq=last_seq if isinstance(last_seq, int) else None,
            terminated=terminated)


def _check_boundaries(found: list[SegmentFile], boundaries: list[_Boundary]) -> None:
    """Each file starts where its name says and continues the one before it."""
    for index, (segment, here) in enumerate(zip(found, boundaries, strict=True)):
        newest = index == len(found) - 1
        if here.first_seq is None:
            if not newest:
                raise _corrupt("segment is empty or damaged", file=segment.name)
        elif here.first_seq != segment.first_seq:
            raise _corrupt(f"segment's first line is seq {here.first_seq}, not the "
                           f"{segment.first_seq} its name says", file=segment.name, line=1)
        if not newest and not here.terminated:
            raise _corrupt("sealed segment does not end with a newline", file=segment.name)
        if index == 0:
            continue
        before = boundaries[index - 1]
        if before.last is None or before.last_seq is None:
            raise _corrupt("segment has no complete line", file=found[index - 1].name)
        if before.last_seq + 1 != segment.first_seq:
            raise _corrupt(f"seq jumps from {before.last_seq} to {segment.first_seq}: a segment "
                           "is missing or out of order", file=segment.name, line=1)
        if here.first_seq is not None and here.first_prev != link(before.last):
            raise _corrupt(f"does not chain to the last line of {found[index - 1].name}",
                           file=segment.name, line=1)


def quarantine(torn: TornTail) -> dict[str, object]:
    """Move a torn last line aside and cut it off; returns the ``recovery`` entry's fields.

    The quarantine file is durable before the segment is truncated, so a crash
    in between loses nothing.
    """
    target = _quarantine_path(torn.segment)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        segments.write_all(fd, torn.data)
        os.fsync(fd)
    finally:
        os.close(fd)
    segments.fsync_dir(target.parent)
    fd = os.open(torn.segment, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, torn.offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    return {
        "reason": "torn last line (no newline), left by a crash during a write",
        "segment": torn.segment.name,
        "offset": torn.offset,
        "bytes": len(torn.data),
        "sha256": hashlib.sha256(torn.data).hexdigest(),
        "quarantine": target.name,
    }


def _quarantine_path(segment: Path) -> Path:
    for n in range(1, 10_000):
        candidate = segment.with_name(f"{segment.name}.torn-{n}")
        if not candidate.exists():
            return candidate
    raise JournalCorrupt("too many quarantine files", file=segment.name)


def _parse(line: bytes, file: str) -> dict[str, object]:
    try:
        entry = json.loads(line)
    except ValueError as e:
        raise _corrupt("a boundary line is not valid JSON", file=file) from e
    if not isinstance(entry, dict):
        raise _corrupt("a boundary line is not a JSON object", file=file)
    return entry


def _time_ns(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value).timestamp() * 1e9)
    except ValueError:
        return None


def _corrupt(what: str, *, file: str | None = None, line: int | None = None) -> JournalCorrupt:
    return JournalCorrupt(f"{what}; refusing to start: {VERIFY_HINT}", file=file, line=line)
