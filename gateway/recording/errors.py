"""What can go wrong with a recording, split by who hears about it.

``RecordingFailed`` and ``RecordingUnavailable`` go on the wire (the client's
statement or session is refused because it could not be recorded, SQLSTATE
58030 like a journal I/O failure). ``RecordingError`` and its subclasses never
do: the replay and verify commands map them to exit codes and messages.
"""

from __future__ import annotations

from ..errors import GatewayError, StatementRefused


class RecordingFailed(StatementRefused):
    """The recording cannot be written and ``recordings.required`` is true."""

    sqlstate = "58030"


class RecordingUnavailable(GatewayError):
    """A session that cannot be recorded is refused before the client can send anything."""

    sqlstate = "58030"


class RecordingError(Exception):
    """A recording cannot be read, found or trusted (never sent to a client)."""


class RecordingMissing(RecordingError):
    """The journal names a recording file that is not there."""


class RecordingKeyError(RecordingError):
    """The master key is missing, unreadable, malformed, or not the recording's key."""


class RecordingTampered(RecordingError):
    """The bytes fail authentication: edited, reordered, spliced or from another file."""

    def __init__(self, message: str, *, offset: int | None = None,
                 chunk: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset
        self.chunk = chunk
