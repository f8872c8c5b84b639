"""Incremental frame splitting for PostgreSQL v3 byte streams.

Typed frames are one type byte, then an int32 length that counts itself but
not the type byte. Startup packets (StartupMessage, SSLRequest,
GSSENCRequest, CancelRequest) are untyped: an int32 length, then a payload.

The relay's hot path uses :func:`scan` to find frame boundaries in a buffer
without building an object per frame; everything else uses
:class:`FrameBuffer`, which hands out whole raw frames.
"""

from __future__ import annotations

from .errors import PROGRAM_LIMIT_EXCEEDED, RemoteProtocolError
from .wireformat import UINT32

# PostgreSQL itself refuses startup packets over 10 000 bytes
# (MAX_STARTUP_PACKET_LENGTH in libpq/pqcomm.h); anything bigger is hostile.
MAX_STARTUP_PACKET = 10_000
# An untyped packet is at least its length word and a protocol/request code.
MIN_STARTUP_PACKET = 8
# Bound on one typed message, so a peer cannot make us buffer without limit.
# PostgreSQL's own ceiling for a single field is 1 GB; 256 MiB keeps a single
# misbehaving session from exhausting the gateway's memory.
DEFAULT_MAX_MESSAGE_SIZE = 256 * 1024 * 1024
HEADER_SIZE = 5

_LENGTH_AT = UINT32.unpack_from
Span = tuple[int, int, int]
"""(type byte, start offset of the frame, end offset of the frame)."""


def scan(buf: bytes | bytearray, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
         start: int = 0) -> tuple[list[Span], int]:
    """Return the complete frames in ``buf[start:]`` and the offset after the last one.

    Raises RemoteProtocolError for a length word below 4 or above the limit,
    as soon as the header is visible, so an oversized frame is refused before
    its body is buffered.
    """
    spans: list[Span] = []
    add = spans.append
    length_at = _LENGTH_AT  # reads in place: no slice per frame
    pos = start
    end = len(buf)
    while end - pos >= HEADER_SIZE:
        (length,) = length_at(buf, pos + 1)
        if length < 4 or length > max_message_size:
            _raise_bad_length(buf[pos], length, max_message_size)
        frame_end = pos + 1 + length
        if frame_end > end:
            break
        add((buf[pos], pos, frame_end))
        pos = frame_end
    return spans, pos


def _raise_bad_length(type_byte: int, length: int, limit: int) -> None:
    label = chr(type_byte) if 32 <= type_byte < 127 else f"0x{type_byte:02x}"
    if length < 4:
        raise RemoteProtocolError(f"invalid message length {length} for message type {label!r}")
    raise RemoteProtocolError(
        f"message of type {label!r} is {length} bytes, over the limit of {limit}",
        sqlstate=PROGRAM_LIMIT_EXCEEDED,
    )


class FrameBuffer:
    """Accumulates bytes and hands out whole raw frames or startup packets."""

    __slots__ = ("_buf", "max_message_size")

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self.max_message_size = max_message_size

    def __len__(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_startup(self) -> bytes | None:
        """The next untyped startup packet (length word included), or None if incomplete."""
        if len(self._buf) < 4:
            return None
        length = int.from_bytes(self._buf[:4], "big")
        if length < MIN_STARTUP_PACKET or length > MAX_STARTUP_PACKET:
            raise RemoteProtocolError(f"invalid startup packet length {length}")
        if len(self._buf) < length:
            return None
        packet = bytes(self._buf[:length])
        del self._buf[:length]
        return packet

    def next_frame(self) -> bytes | None:
        """The next typed frame (type byte and length included), or None if incomplete."""
        if len(self._buf) < HEADER_SIZE:
            return None
        length = int.from_bytes(self._buf[1:5], "big")
        if length < 4 or length > self.max_message_size:
            _raise_bad_length(self._buf[0], length, self.max_message_size)
        if len(self._buf) < 1 + length:
            return None
        frame = bytes(self._buf[: 1 + length])
        del self._buf[: 1 + length]
        return frame

    def take_all(self) -> bytes:
        """Everything buffered so far, raw; used when switching to pass-through."""
        data = bytes(self._buf)
        self._buf.clear()
        return data
