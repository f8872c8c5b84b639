"""Reading a journal from a remembered position onwards, checking each link of the chain.

A :class:`Position` is (segment name, byte offset of the next unread line, hash the next
line must carry as ``prev``). :func:`read_from` yields every complete line after it, with the
position after that line, and stops at the first line whose ``prev`` does not link (raising
:class:`ChainBroken`): the console's index is a cache of what the chain vouches for, never
more. An unterminated last line (a write in progress) and a zero-filled preallocated tail
end a segment. Reads only. Driven by ``index``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from ..journal import segments
from ..journal.chain import link

READ_BLOCK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Position:
    segment: str | None = None  # None: the journal's beginning
    offset: int = 0
    head: str | None = None  # link() of the last line read; None: accept the first line's prev


class ChainBroken(Exception):
    """A line whose ``prev`` does not match the line before it (or that does not parse)."""

    def __init__(self, segment: str, line_offset: int, seq: object, why: str) -> None:
        super().__init__(f"{segment} at byte {line_offset} (seq {seq}): {why}")
        self.segment, self.line_offset, self.seq = segment, line_offset, seq


class PositionLost(Exception):
    """The remembered segment is gone (pruned, or another journal): rebuild from scratch."""


def read_from(directory: Path, start: Position
              ) -> Iterator[tuple[dict[str, object], bytes, Position]]:
    """(fields, raw line, position after it) for every complete, linked line after ``start``."""
    found = segments.list_segments(directory)
    names = [s.name for s in found]
    if start.segment is not None and start.segment not in names:
        raise PositionLost(f"segment {start.segment} is no longer in {directory}")
    first = names.index(start.segment) if start.segment is not None else 0
    head = start.head
    for i, segment in enumerate(found[first:]):
        offset = start.offset if i == 0 and start.segment is not None else 0
        for line_offset, raw in _lines(segment.path, offset):
            try:
                fields = orjson.loads(raw)
            except ValueError as e:
                raise ChainBroken(segment.name, line_offset, "?", "not JSON") from e
            if not isinstance(fields, dict):
                raise ChainBroken(segment.name, line_offset, "?", "not a JSON object")
            if head is not None and fields.get("prev") != head:
                raise ChainBroken(segment.name, line_offset, fields.get("seq"),
                                  "prev does not link to the line before")
            head = link(raw)
            yield fields, raw, Position(segment.name, line_offset + len(raw) + 1, head)


def _lines(path: Path, offset: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line without newline) of complete lines from ``offset``; stops at NUL fill."""
    with open(path, "rb") as f:
        f.seek(offset)
        pending = b""
        base = offset
        while block := f.read(READ_BLOCK):
            data = pending + block
            start = 0
            while (end := data.find(b"\n", start)) >= 0:
                if data[start:start + 1] == b"\x00":
                    return  # the preallocated, zero-filled rest of the segment
                yield base + start, data[start:end]
                start = end + 1
            if data[start:start + 1] == b"\x00":
                return
            pending = data[start:]
            base += start
