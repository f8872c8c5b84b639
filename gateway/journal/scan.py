"""Checking one run of consecutive lines: parse, seq order, ``prev`` links, checkpoints.

The hot loop of verification. It works on bytes already in memory and knows
nothing about files or other chunks, so the verifier can run it in worker
processes over slices of large segments and recovery can run it inline on the
newest segment. What lies at a chunk's edges (the first line's ``prev``, the
unterminated tail) is returned for :mod:`.stitch` to judge.
"""

from __future__ import annotations

import hashlib
import json
import json.scanner
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .chain import CHECKPOINT_FIELDS, LINE_DOMAIN
from .checkpoints import Checkpoint
from .segments import written_part

# The scanner json.loads wraps, called directly (typeshed mistypes its argument).
_SCAN_ONCE = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]

# Entries whose content matters beyond the chain: the stitcher sees these.
SPECIAL_TYPES = frozenset({"checkpoint", "prune", "start"})


@dataclass
class LineFault:
    """The first problem in a chunk; ``index`` is 0-based within the chunk."""

    index: int
    seq: int | None
    what: str


@dataclass
class Special:
    index: int
    seq: int
    type: str
    entry: dict[str, object]
    checkpoint: Checkpoint | None = None


@dataclass
class ChunkResult:
    """What a chunk holds; indexes are 0-based line positions within the chunk."""

    lines: int = 0
    size: int = 0
    first_seq: int | None = None
    first_prev: str | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    tail: bytes = b""
    specials: list[Special] = field(default_factory=list)
    fault: LineFault | None = None


def scan_lines(data: bytes, key: Ed25519PublicKey) -> ChunkResult:
    """Check every complete line of ``data``; stops at the first fault.

    ``tail`` is what follows the last complete line up to the zero-filled end of data.
    """
    whole, tail = written_part(data)
    # What was written: whole lines and the torn rest, not the zero-filled preallocation.
    result = ChunkResult(size=len(whole) + len(tail), tail=tail)
    lines = whole.split(b"\n")
    lines.pop()
    scan_once = _SCAN_ONCE
    sha256 = hashlib.sha256
    specials = SPECIAL_TYPES
    expected: int | None = None
    prev_hash: str | None = None
    index = 0
    for index, line in enumerate(lines):
        try:
            # The JSON scanner itself, on strictly decoded UTF-8: json.loads would
            # also sniff the encoding and skip whitespace a canonical line never has.
            text = line.decode()
            entry, end = scan_once(text, 0)
            if end != len(text):
                raise ValueError("trailing data")
            seq = entry["seq"]
            prev = entry["prev"]
            kind = entry["type"]
            entry["time"]
        except (ValueError, TypeError, KeyError, IndexError, StopIteration) as e:
            result.fault = LineFault(index, expected, f"not a journal entry: {_describe(e)}")
            break
        if seq.__class__ is not int or kind.__class__ is not str:
            result.fault = LineFault(index, expected, "seq is not an integer or type not a string")
            break
        if expected is None:
            result.first_seq, result.first_prev = seq, prev
        elif seq != expected:
            result.fault = LineFault(index, expected, _seq_fault(seq, expected))
            break
        elif prev != prev_hash:
            result.fault = LineFault(index - 1, seq - 1, _link_fault())
            break
        if kind in specials:
            problem = _special(result, index, seq, kind, entry, key)
            if problem is not None:
                result.fault = LineFault(index, seq, problem)
                break
        prev_hash = sha256(LINE_DOMAIN + line).hexdigest()
        expected = seq + 1
    # After a break, index is the faulty line: the lines before it were checked.
    result.lines = len(lines) if result.fault is None else index
    if expected is not None:
        result.last_seq = expected - 1
        result.last_hash = prev_hash
    return result


def scan_file_range(path: str, start: int, end: int, public_raw: bytes) -> ChunkResult:
    """Worker-process entry point: scan bytes [start, end) of a segment."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start) if end >= 0 else f.read()
    return scan_lines(data, Ed25519PublicKey.from_public_bytes(public_raw))


def _special(result: ChunkResult, index: int, seq: int, kind: str, entry: dict[str, object],
             key: Ed25519PublicKey) -> str | None:
    checkpoint = None
    if kind == "checkpoint":
        if entry.keys() != CHECKPOINT_FIELDS:
            return f"checkpoint has fields {sorted(entry)}, not {sorted(CHECKPOINT_FIELDS)}"
        try:
            checkpoint = Checkpoint.from_mapping(entry)
        except ValueError as e:
            return f"malformed checkpoint: {e}"
        if checkpoint.covers != seq - 1 or checkpoint.head != entry["prev"]:
            return "checkpoint does not cover the line before it"
        if not checkpoint.is_signed_by(key):
            return ("checkpoint signature does not verify: the chain up to here was rewritten, "
                    "the checkpoint was forged, or this is not the journal's public key")
    result.specials.append(Special(index, seq, kind, entry, checkpoint))
    return None


def _seq_fault(seq: int, expected: int) -> str:
    if seq < expected:
        return (f"seq {seq} where {expected} was expected: a line was inserted before this one "
                "(or lines were duplicated or moved)")
    return f"seq {seq} where {expected} was expected (lines were removed or moved)"


def _link_fault() -> str:
    return ("this line's chain hash does not match the prev recorded by the next line: "
            "the line was altered (or the next line's prev was)")


def _describe(e: Exception) -> str:
    if isinstance(e, KeyError):
        return f"missing {e.args[0]!r}"
    if isinstance(e, UnicodeDecodeError):
        return "not UTF-8"
    if isinstance(e, ValueError | StopIteration):
        return "invalid JSON"
    return "not a JSON object"
