"""Hot-path field extraction from raw frames, without building message objects.

The relay sees every Query, Parse, Bind and Execute and every CommandComplete;
decoding each into a dataclass costs more than the rest of the relay's work
per statement. These functions read just the fields the relay needs from a
whole frame (type byte and length included) that ``framing.scan`` already
bounded. Malformed frames raise RemoteProtocolError like the full codec.
"""

from __future__ import annotations

from .errors import RemoteProtocolError

_HEADER = 5


def _cstring(frame: bytes, start: int) -> tuple[str, int]:
    """The NUL-terminated UTF-8 string at ``start`` and the offset after its NUL."""
    end = frame.find(b"\x00", start)
    if end < 0:
        raise RemoteProtocolError(f"unterminated string in {chr(frame[0])!r} message")
    try:
        return frame[start:end].decode("utf-8"), end + 1
    except UnicodeDecodeError as e:
        raise RemoteProtocolError(f"invalid UTF-8 in {chr(frame[0])!r} message") from e


def query_sql(frame: bytes) -> str:
    """Query: the SQL text."""
    sql, end = _cstring(frame, _HEADER)
    if end != len(frame):
        raise RemoteProtocolError("trailing bytes after Query text")
    return sql


def parse_name_sql(frame: bytes) -> tuple[str, str]:
    """Parse: (statement name, SQL text). Parameter types are left to the upstream."""
    name, offset = _cstring(frame, _HEADER)
    sql, offset = _cstring(frame, offset)
    if len(frame) < offset + 2:
        raise RemoteProtocolError("Parse message cut short")
    return name, sql


def bind_names(frame: bytes) -> tuple[str, str]:
    """Bind: (portal name, statement name)."""
    portal, offset = _cstring(frame, _HEADER)
    statement, _ = _cstring(frame, offset)
    return portal, statement


def execute_portal(frame: bytes) -> str:
    """Execute: the portal name."""
    portal, end = _cstring(frame, _HEADER)
    if end + 4 != len(frame):
        raise RemoteProtocolError("Execute message has the wrong length")
    return portal


def close_target(frame: bytes) -> tuple[str, str]:
    """Close: (kind 'S' or 'P', name)."""
    if len(frame) < _HEADER + 2:
        raise RemoteProtocolError("Close message cut short")
    kind = chr(frame[_HEADER])
    if kind not in "SP":
        raise RemoteProtocolError(f"invalid Close target {kind!r}")
    name, _ = _cstring(frame, _HEADER + 1)
    return kind, name


def command_tag(frame: bytes) -> str:
    """CommandComplete: the command tag (e.g. ``SELECT 1``)."""
    tag, _ = _cstring(frame, _HEADER)
    return tag
