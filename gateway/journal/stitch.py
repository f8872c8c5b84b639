"""Joining checked chunks into one chain, and the checks only the whole can answer.

:func:`.scan.scan_lines` checks the inside of a chunk; :class:`ChainCheck`
checks that each chunk continues the one before (seq and ``prev``), that
segment files start where their names say, that every entry naming a journal
names the same one, that the first line chains to the genesis or to a recorded
prune, and that the chain still holds the newest checkpoint recorded in
``checkpoint.json`` and in a witness copy. Driven by the verifier over every
segment and by recovery over the newest ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .chain import FORMAT_VERSION, genesis
from .checkpoints import Checkpoint
from .scan import ChunkResult, Special


@dataclass(frozen=True, slots=True)
class Failure:
    """Where the journal first stops being what the gateway wrote."""

    seq: int | None
    file: str | None
    line: int | None
    what: str

    def __str__(self) -> str:
        where = []
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        if self.file is not None:
            where.append(self.file if self.line is None else f"{self.file} line {self.line}")
        return f"{', '.join(where)}: {self.what}" if where else self.what


class Tampered(Exception):
    """Raised inside the checks to stop at the first failure."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(str(failure))
        self.failure = failure


@dataclass(frozen=True, slots=True)
class LineBefore:
    """The line preceding the first chunk, when checking starts mid-journal."""

    seq: int
    hash: str
    file: str
    line: int | None


class ChainCheck:
    def __init__(self, key: Ed25519PublicKey, *, journal_id: str | None = None,
                 after: LineBefore | None = None, watch: frozenset[int] = frozenset()) -> None:
        self.key = key
        self.journal_id = journal_id
        self.watch = watch
        self.next_seq = after.seq + 1 if after else None
        self.head = after.hash if after else None
        self.head_at: tuple[str, int | None] | None = (after.file, after.line) if after else None
        self.anchor: tuple[int, str | None, str] | None = None
        self.entries = 0
        self.bytes = 0
        self.checkpoints = 0
        self.newest_checkpoint: Checkpoint | None = None
        self.pruned: dict[int, str] = {}
        # Checkpoint lines at the seqs of recorded checkpoints (checkpoint.json, witness).
        self.watched_checkpoints: dict[int, Checkpoint] = {}
        # The first seq this check has seen (or starts after), to know what it can judge.
        self.first_seq = after.seq + 1 if after else None

    @property
    def last_seq(self) -> int | None:
        return None if self.next_seq is None else self.next_seq - 1

    def add(self, chunk: ChunkResult, file: str, first_line: int, *,
            segment_seq: int | None = None) -> None:
        """Stitch the next chunk; ``segment_seq`` when it starts a segment (from its name)."""
        fault = chunk.fault
        if chunk.first_seq is not None:
            if segment_seq is not None and chunk.first_seq != segment_seq:
                raise Tampered(Failure(chunk.first_seq, file, first_line, (
                    f"the file name says this segment starts at seq {segment_seq}, but its first "
                    f"line is seq {chunk.first_seq}: segments were renamed, swapped or replaced")))
            self._join(chunk.first_seq, chunk.first_prev, file, first_line, segment_seq)
        # Specials all precede the fault (scanning stops there), so this keeps chain order.
        for special in chunk.specials:
            self._special(special, file, first_line + special.index)
        if fault is not None:
            what = fault.what
            if "signature" in what:
                good = self.newest_checkpoint
                what += (f"; the last checkpoint that verifies is seq {good.seq} ({good.time})"
                         if good else "; no earlier checkpoint verifies")
            raise Tampered(Failure(fault.seq, file, first_line + fault.index, what))
        if chunk.last_seq is not None and chunk.last_hash is not None:
            self.next_seq = chunk.last_seq + 1
            self.head = chunk.last_hash
            self.head_at = (file, first_line + chunk.lines - 1)
        self.entries += chunk.lines
        self.bytes += chunk.size

    def _join(self, seq: int, prev: str | None, file: str, line: int,
              segment_seq: int | None) -> None:
        if self.next_seq is None:
            self.anchor = (seq, prev, file)
            self.first_seq = seq
            return
        if seq != self.next_seq:
            gap = "a segment is missing or segments are out of order" if segment_seq else (
                "lines were removed, inserted or moved")
            raise Tampered(Failure(seq, file, line, (
                f"seq {seq} follows seq {self.next_seq - 1}: {gap}")))
        if prev != self.head:
            head_file, head_line = self.head_at or (file, None)
            raise Tampered(Failure(seq - 1, head_file, head_line, (
                f"this line's chain hash does not match the prev recorded by the next line "
                f"({file} line {line}): the line was altered (or the next line's prev was)")))

    def _special(self, special: Special, file: str, line: int) -> None:
        entry = special.entry
        if special.type == "prune":
            self._prune(entry, special.seq, file, line)
            return
        named = special.checkpoint.journal if special.checkpoint else entry.get("journal")
        if special.type == "start":
            _check_format(entry.get("format", 1), special.seq, file, line)
            if named is None:
                return
        if not isinstance(named, str):
            raise Tampered(Failure(special.seq, file, line, "journal id is not a string"))
        if self.journal_id is None:
            self.journal_id = named
        elif named != self.journal_id:
            raise Tampered(Failure(special.seq, file, line, (
                f"entry names journal {named}, but this is journal {self.journal_id}: "
                "lines from another journal were spliced in")))
        if special.checkpoint is not None:
            self.checkpoints += 1
            self.newest_checkpoint = special.checkpoint
            if special.seq in self.watch:
                self.watched_checkpoints[special.seq] = special.checkpoint

    def _prune(self, entry: dict[str, object], seq: int, file: str, line: int) -> None:
        removed = entry.get("removed")
        for item in removed if isinstance(removed, list) else [None]:
            last_seq = item.get("last_seq") if isinstance(item, dict) else None
            last_hash = item.get("last_hash") if isinstance(item, dict) else None
            if not isinstance(last_seq, int) or not isinstance(last_hash, str):
                raise Tampered(Failure(seq, file, line, "malformed prune entry"))
            self.pruned[last_seq] = last_hash

    def finish_anchor(self) -> None:
        """The first line must chain to the genesis, or to a segment a prune entry removed."""
        if self.anchor is None:
            return
        seq, prev, file = self.anchor
        if seq == 1:
            if self.journal_id is None:
                raise Tampered(Failure(1, file, 1, "no entry names the journal id"))
            if prev != genesis(self.journal_id):
                raise Tampered(Failure(1, file, 1, (
                    f"the first line does not chain to the genesis of journal {self.journal_id}")))
        elif self.pruned.get(seq - 1) != prev:
            raise Tampered(Failure(seq, file, 1, (
                f"the journal starts at seq {seq}, but no prune entry records removing the "
                "segments before it: segments were deleted")))

    def finish_checkpoints(self, *, whole: bool) -> None:
        """An unsigned journal is only acceptable in the instant after its creation."""
        if whole and self.checkpoints == 0 and (self.last_seq or 0) > 1:
            raise Tampered(Failure(None, None, None, (
                "the journal holds no signed checkpoint: checkpoints were stripped")))

    def check_recorded(self, cp: Checkpoint | None, source: str, *, rollback: bool) -> None:
        """The chain must still hold the checkpoint kept in ``source``, unchanged."""
        if cp is None:
            if (self.last_seq or 0) > 2:
                raise Tampered(Failure(None, source, None, (
                    "missing: it holds the newest checkpoint, and without it truncation "
                    "cannot be detected")))
            return
        if not cp.is_signed_by(self.key):
            raise Tampered(Failure(cp.seq, source, None, "checkpoint signature does not verify"))
        if self.journal_id is not None and cp.journal != self.journal_id:
            raise Tampered(Failure(cp.seq, source, None, (
                f"checkpoint is for journal {cp.journal}, not {self.journal_id}")))
        last = self.last_seq or 0
        if cp.seq > last:
            file, line = self.head_at or (None, None)
            kind = "rolled back to an older copy" if rollback else "truncated"
            raise Tampered(Failure(last + 1, file, None if line is None else line + 1, (
                f"the journal ends at seq {last}, but {source} holds a signed checkpoint at seq "
                f"{cp.seq} ({cp.time}): the journal was {kind}")))
        found = self.watched_checkpoints.get(cp.seq)
        scanned = self.first_seq is not None and cp.seq >= self.first_seq
        if found is None and cp.seq in self.watch and scanned:
            raise Tampered(Failure(cp.seq, source, None, (
                f"the line at seq {cp.seq} is not the checkpoint {source} holds: "
                "the journal was rewritten")))
        if found is not None and found != cp:
            raise Tampered(Failure(cp.seq, source, None, (
                f"the checkpoint at seq {cp.seq} differs from the one {source} holds: "
                "the journal was rewritten")))


def _check_format(version: object, seq: int, file: str, line: int) -> None:
    """A ``start`` names its journal format; this verifier reads 1 up to FORMAT_VERSION."""
    if version.__class__ is not int or not 1 <= version <= FORMAT_VERSION:  # type: ignore[operator]
        raise Tampered(Failure(seq, file, line, (
            f"journal format {version!r}: this phigate reads formats 1 to {FORMAT_VERSION} "
            "(a newer phigate wrote it, or the start entry was altered)")))
