"""Offline verification of a whole journal directory, for auditors.

Checks every line parses, seqs are contiguous, every ``prev`` link (within and
across segments), that files start where their names say, every checkpoint
signature, that the chain still holds the checkpoint in ``checkpoint.json``
(no truncation below it) and, given a witness directory, the one there (no
rollback to an older copy). Stops at the first failure and says where. Large
journals are scanned in parallel slices by worker processes; the stitching is
always done here, in order. Driven by ``phigate journal verify`` and the
benchmark; reads only, so it is safe on a live journal.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import segments
from .checkpoints import Checkpoint, read_checkpoint_file, witness_name
from .keys import public_raw
from .scan import ChunkResult, scan_file_range, scan_lines
from .segments import SegmentFile
from .stitch import ChainCheck, Failure, Tampered

# Below this a journal is verified in-process: starting workers costs more than it saves.
PARALLEL_MIN_BYTES = 8 * 1024 * 1024
# Slices handed to workers; big enough to amortise the hand-off, small enough to balance.
CHUNK_BYTES = 8 * 1024 * 1024
# A live gateway may be mid-write when we read the last line; look again once.
SETTLE_S = 0.05


@dataclass(frozen=True, slots=True)
class VerifyReport:
    directory: Path
    failure: Failure | None
    entries: int
    segments: int
    bytes: int
    seconds: float
    journal_id: str | None
    first_seq: int | None
    last_seq: int | None
    newest_checkpoint: Checkpoint | None
    witness: Checkpoint | None

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def entries_per_s(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    @property
    def unsigned_tail(self) -> int:
        """Entries after the newest checkpoint (normal for a running gateway, under a second)."""
        if self.last_seq is None or self.newest_checkpoint is None:
            return 0
        return self.last_seq - self.newest_checkpoint.seq

    def summary(self) -> str:
        counts = (f"{self.entries} entries in {self.segments} segments "
                  f"({self.bytes / 1e6:.1f} MB) in {self.seconds:.2f} s "
                  f"({self.entries_per_s:,.0f} entries/s, {self.mb_per_s:.0f} MB/s)")
        if self.failure is not None:
            return f"TAMPERED: {self.failure}\n(checked {counts} before stopping)"
        lines = [f"OK: journal {self.journal_id}, seq {self.first_seq}..{self.last_seq}: "
                 f"{counts}"]
        if self.newest_checkpoint is not None:
            cp = self.newest_checkpoint
            lines.append(f"newest checkpoint: seq {cp.seq} at {cp.time}; "
                         f"{self.unsigned_tail} entries after it not yet signed")
        if self.witness is not None:
            lines.append(f"witness checkpoint seq {self.witness.seq} at {self.witness.time}: "
                         "present in the journal")
        return "\n".join(lines)


Progress = Callable[[int, int], None]
"""Called as ``progress(bytes checked, bytes in all segments)`` after each slice."""


def verify_journal(directory: Path, key: Ed25519PublicKey, *, witness_dir: Path | None = None,
                   workers: int | None = None, progress: Progress | None = None
                   ) -> VerifyReport:
    """Verify ``directory``; raises OSError only if it cannot be read at all (a usage error)."""
    started = time.perf_counter()
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory} is not a directory")
    run = _Run(directory, key, witness_dir)
    run.progress = progress
    try:
        run.check(workers)
    except Tampered as e:
        run.failure = e.failure
    return run.report(time.perf_counter() - started)


class _Run:
    def __init__(self, directory: Path, key: Ed25519PublicKey, witness_dir: Path | None) -> None:
        self.directory = directory
        self.key = key
        self.witness_dir = witness_dir
        self.failure: Failure | None = None
        self.check_: ChainCheck | None = None
        self.segments = 0
        self.witness: Checkpoint | None = None
        self.progress: Progress | None = None

    def check(self, workers: int | None) -> None:
        # Read the recorded checkpoints first: written only after their line is
        # durable, so everything they cover is on disk by the time we list segments.
        recorded = _read_recorded(self.directory / segments.CHECKPOINT_FILE,
                                  segments.CHECKPOINT_FILE)
        witnesses = _read_witnesses(self.witness_dir) if self.witness_dir else {}
        found = segments.list_segments(self.directory)
        if not found:
            raise Tampered(Failure(None, str(self.directory), None, "no journal segments"))
        watch = frozenset(cp.seq for cp in [recorded, *witnesses.values()] if cp is not None)
        check = self.check_ = ChainCheck(self.key, watch=watch)
        self._scan(found, check, workers)
        check.finish_anchor()
        check.finish_checkpoints(whole=True)
        check.check_recorded(recorded, segments.CHECKPOINT_FILE, rollback=False)
        if self.witness_dir is not None:
            self._check_witness(check, witnesses)

    def _check_witness(self, check: ChainCheck, witnesses: dict[str, Checkpoint]) -> None:
        source = str(self.witness_dir)
        witness = witnesses.get(check.journal_id or "")
        if witness is None:
            raise Tampered(Failure(None, source, None, (
                f"holds no checkpoint for journal {check.journal_id}: the journal was replaced, "
                "or its checkpoints never reached this witness")))
        self.witness = witness
        check.check_recorded(witness, f"witness {source}", rollback=True)

    def _scan(self, found: list[SegmentFile], check: ChainCheck, workers: int | None) -> None:
        sizes = [os.stat(segment.path).st_size for segment in found]
        count = _worker_count(sum(sizes), workers)
        slices = _plan(found, sizes, count)
        line_base, done, total = 1, 0, sum(sizes)
        current: SegmentFile | None = None
        for (segment, start, _, is_last_slice), chunk in _results(slices, self.key, count):
            done += chunk.size
            if self.progress is not None:
                self.progress(done, total)
            if segment is not current:
                current, line_base = segment, 1
                self.segments += 1
                if chunk.lines == 0 and not chunk.tail and segment is not found[-1]:
                    raise Tampered(Failure(None, segment.name, None, "segment is empty"))
                if chunk.lines == 0 and check.next_seq not in (None, segment.first_seq):
                    raise Tampered(Failure(segment.first_seq, segment.name, None, (
                        f"empty newest segment named for seq {segment.first_seq}, but the "
                        f"chain ends at seq {check.last_seq}")))
            check.add(chunk, segment.name, line_base,
                      segment_seq=segment.first_seq if start == 0 else None)
            line_base += chunk.lines
            if is_last_slice and chunk.tail:
                offset = start + chunk.size - len(chunk.tail)
                self._settle_tail(check, segment, offset, line_base, segment is found[-1])

    def _settle_tail(self, check: ChainCheck, segment: SegmentFile, offset: int,
                     line_base: int, newest: bool) -> None:
        """An unterminated last line: a write in progress, a crash's torn line, or tampering."""
        if newest:
            time.sleep(SETTLE_S)
            with open(segment.path, "rb") as f:
                f.seek(offset)
                more = scan_lines(f.read(), self.key)
            check.add(more, segment.name, line_base, segment_seq=None)
            if not more.tail:
                return
            line_base += more.lines
        raise Tampered(Failure((check.last_seq or 0) + 1, segment.name, line_base, (
            "the last line is incomplete (no newline): a write torn by a crash, which the "
            "gateway quarantines when it next starts, or tampering" if newest else
            "segment does not end with a newline")))

    def report(self, seconds: float) -> VerifyReport:
        check = self.check_
        return VerifyReport(
            directory=self.directory, failure=self.failure,
            entries=check.entries if check else 0, segments=self.segments,
            bytes=check.bytes if check else 0, seconds=seconds,
            journal_id=check.journal_id if check else None,
            first_seq=check.first_seq if check else None,
            last_seq=check.last_seq if check else None,
            newest_checkpoint=check.newest_checkpoint if check else None,
            witness=self.witness)


_Slice = tuple[SegmentFile, int, int, bool]
"""(segment, start offset, end offset or -1 for "to the end", is the segment's last slice)."""


def _plan(found: list[SegmentFile], sizes: list[int], count: int) -> list[_Slice]:
    if count <= 1:
        return [(segment, 0, -1, True) for segment in found]
    slices: list[_Slice] = []
    for segment, size in zip(found, sizes, strict=True):
        # The newest segment may grow while we read: its last slice reads to the end.
        cuts = [0, *_line_cuts(segment.path, size), -1]
        for start, end in zip(cuts, cuts[1:], strict=False):
            slices.append((segment, start, end, end == -1))
    return slices


def _line_cuts(path: Path, size: int) -> list[int]:
    """Offsets just after a newline, about every CHUNK_BYTES, so slices hold whole lines."""
    cuts: list[int] = []
    with open(path, "rb") as f:
        target = CHUNK_BYTES
        while target < size:
            f.seek(target - 1)
            skipped = 0
            while block := f.read(65536):
                found = block.find(b"\n")
                nul = block.find(b"\0")
                if nul >= 0 and (found < 0 or nul < found):
                    return cuts  # the zero-filled tail: no more lines to cut between
                if found >= 0:
                    cut = target - 1 + skipped + found + 1
                    if cut < size:
                        cuts.append(cut)
                    target = cut + CHUNK_BYTES
                    break
                skipped += len(block)
            else:
                break
    return cuts


def _worker_count(total: int, workers: int | None) -> int:
    if workers is not None:
        return max(1, workers)
    if total < PARALLEL_MIN_BYTES:
        return 1
    return min(os.cpu_count() or 1, 8)


def _results(slices: list[_Slice], key: Ed25519PublicKey, count: int
             ) -> Iterator[tuple[_Slice, ChunkResult]]:
    """Scan results in chain order; lazily, so a failure stops early."""
    raw = public_raw(key)
    if count <= 1:
        for item in slices:
            yield item, scan_file_range(str(item[0].path), item[1], item[2], raw)
        return
    executor: Executor = ProcessPoolExecutor(max_workers=count, mp_context=_context())
    try:
        futures = [executor.submit(scan_file_range, str(s[0].path), s[1], s[2], raw)
                   for s in slices]
        for item, future in zip(slices, futures, strict=True):
            yield item, future.result()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _context() -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds, but is only safe while we have no other
    # threads (the CLI); inside a threaded program (a test, the gateway) use spawn.
    return multiprocessing.get_context("fork" if threading.active_count() == 1 else "spawn")


def _read_recorded(path: Path, source: str) -> Checkpoint | None:
    try:
        return read_checkpoint_file(path)
    except ValueError as e:
        raise Tampered(Failure(None, source, None, f"damaged: {e}")) from e


def _read_witnesses(directory: Path) -> dict[str, Checkpoint]:
    """Every journal's checkpoint in a witness directory, keyed by journal id."""
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory} is not a directory")
    found = {}
    for entry in sorted(directory.iterdir()):
        if entry.name.endswith(".checkpoint.json"):
            cp = _read_recorded(entry, str(entry))
            if cp is not None and entry.name == witness_name(cp.journal):
                found[cp.journal] = cp
    return found
