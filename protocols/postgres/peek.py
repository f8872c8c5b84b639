"""Hot-path field extraction from raw frames, without building message objects.

The relay sees every Query, Parse, Bind and Execute and every CommandComplete;
decoding each into a dataclass costs more than the rest of the relay's work
per statement. These functions read just the fields the relay needs from a
whole frame (type byte and length included) that ``framing.scan`` already
bounded. Malformed frames raise RemoteProtocolError like the full codec.
"""

from __future__ import annotations

from .encodings import UTF8, ClientEncoding
from .errors import RemoteProtocolError

_HEADER = 5


def _cstring(frame: bytes, start: int, encoding: ClientEncoding = UTF8) -> tuple[str, int]:
    """The NUL-terminated string at ``start``, read in the client's encoding, and the offset
    after its NUL. Text the encoding cannot read raises EncodingRefused (22021)."""
    end = frame.find(b"\x00", start)
    if end < 0:
        raise RemoteProtocolError(f"unterminated string in {chr(frame[0])!r} message")
    return encoding.decode(frame[start:end]), end + 1


def query_sql(frame: bytes, encoding: ClientEncoding = UTF8) -> str:
    """Query: the SQL text."""
    sql, end = _cstring(frame, _HEADER, encoding)
    if end != len(frame):
        raise RemoteProtocolError("trailing bytes after Query text")
    return sql


def parse_name_sql(frame: bytes, encoding: ClientEncoding = UTF8) -> tuple[str, str]:
    """Parse: (statement name, SQL text). Parameter types are left to the upstream."""
    name, offset = _cstring(frame, _HEADER, encoding)
    sql, offset = _cstring(frame, offset, encoding)
    if len(frame) < offset + 2:
        raise RemoteProtocolError("Parse message cut short")
    return name, sql


def bind_names(frame: bytes, encoding: ClientEncoding = UTF8) -> tuple[str, str]:
    """Bind: (portal name, statement name)."""
    portal, offset = _cstring(frame, _HEADER, encoding)
    statement, _ = _cstring(frame, offset, encoding)
    return portal, statement


def execute_portal(frame: bytes, encoding: ClientEncoding = UTF8) -> str:
    """Execute: the portal name."""
    portal, end = _cstring(frame, _HEADER, encoding)
    if end + 4 != len(frame):
        raise RemoteProtocolError("Execute message has the wrong length")
    return portal


def close_target(frame: bytes, encoding: ClientEncoding = UTF8) -> tuple[str, str]:
    """Close: (kind 'S' or 'P', name)."""
    if len(frame) < _HEADER + 2:
        raise RemoteProtocolError("Close message cut short")
    kind = chr(frame[_HEADER])
    if kind not in "SP":
        raise RemoteProtocolError(f"invalid Close target {kind!r}")
    name, _ = _cstring(frame, _HEADER + 1, encoding)
    return kind, name


def command_tag(frame: bytes, encoding: ClientEncoding = UTF8) -> str:
    """CommandComplete: the command tag (e.g. ``SELECT 1``)."""
    tag, _ = _cstring(frame, _HEADER, encoding)
    return tag
