"""Protocol errors: whose fault it was, and the SQLSTATE a peer should see.

Raised by the framing and codec layers; the gateway turns them into an
ErrorResponse (08P01 protocol_violation unless stated otherwise) or a close.
"""

from __future__ import annotations

PROTOCOL_VIOLATION = "08P01"
PROGRAM_LIMIT_EXCEEDED = "54000"


class ProtocolError(Exception):
    """Bytes on the wire that do not form a valid PostgreSQL v3 message."""

    def __init__(self, message: str, *, sqlstate: str = PROTOCOL_VIOLATION) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed, oversized or out of order."""


class LocalProtocolError(ProtocolError):
    """We were asked to encode something that cannot go on the wire."""
