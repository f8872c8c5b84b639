"""How a session's text must be read: its client encoding and its string-literal rules.

The server reads a client's text in ``client_encoding`` and, with ``standard_conforming_strings
= off``, takes backslashes in ``'…'`` literals as escapes; both can change mid-session (``SET``,
``set_config``, a rolled-back transaction), and the server says so with a ParameterStatus just
before the next ReadyForQuery. :class:`TextReading` holds the current rules for the relay
(``gateway/proxy/relay.py``), set at start-up (``gateway/proxy/startup.py``) from the upstream's
ParameterStatus messages and followed on every later one.

A pipelining client may already have sent text the relay read under the old rules when the
change is reported. Text that is pure ASCII without a backslash reads alike under every rule;
``count`` counts the texts that do not, and a change reported after one of those was read
behind the changing statement ends the session rather than let it mean something else upstream.
"""

from __future__ import annotations

from protocols.postgres import messages as m
from protocols.postgres.decoder import decode_backend
from protocols.postgres.encodings import UTF8, ClientEncoding, client_encoding
from protocols.postgres.errors import ProtocolError, RemoteProtocolError

from ..errors import ParameterRefused

# Never fails to decode: for server text (errors) in an encoding Python cannot read.
_ANY_BYTES = ClientEncoding("LATIN1", "latin_1")


class TextReading:
    __slots__ = ("encoding", "standard_strings", "server_encoding", "count")

    def __init__(self, encoding: ClientEncoding = UTF8, *, standard_strings: bool = True,
                 server_encoding: str = "UTF8") -> None:
        self.encoding = encoding
        self.standard_strings = standard_strings
        self.server_encoding = server_encoding
        self.count = 0

    @classmethod
    def at_startup(cls, parameters: dict[str, str]) -> TextReading:
        """The rules the upstream reported at start-up; ParameterRefused if unreadable."""
        server = parameters.get("server_encoding", "UTF8")
        name = parameters.get("client_encoding", "UTF8")
        encoding = client_encoding(name, server)
        if encoding is None:
            raise ParameterRefused(f"phigate: client_encoding {name!r} is not supported",
                                   hint="connect with client_encoding UTF8")
        return cls(encoding, standard_strings=parameters.get(
            "standard_conforming_strings", "on") == "on", server_encoding=server)

    def read(self, frame: bytes) -> None:
        """Note a statement text about to be read under the current rules."""
        if b"\\" in frame or not frame.isascii():
            self.count += 1

    def follow(self, name: str, value: str, *, read_since: int) -> None:
        """A ParameterStatus: adopt the new rules. ``read_since`` is ``count`` as it was when
        the statement that (possibly) changed them was read."""
        if name == "client_encoding":
            encoding = client_encoding(value, self.server_encoding)
            if encoding is None:
                raise ProtocolError(f"phigate: client_encoding {value!r} is not supported; "
                                    "the session is ended", sqlstate="22023")
            if encoding != self.encoding:
                self._changed(name, read_since)
                self.encoding = encoding
        elif name == "standard_conforming_strings":
            on = value == "on"
            if on != self.standard_strings:
                self._changed(name, read_since)
                self.standard_strings = on
        elif name == "server_encoding":
            self.server_encoding = value

    def _changed(self, name: str, read_since: int) -> None:
        if self.count > read_since:
            raise ProtocolError(f"phigate: {name} changed while statements sent after the "
                                "change were already read the old way; the session is ended",
                                sqlstate="22023")

    def backend_error(self, frame: bytes) -> m.ErrorResponse:
        """An upstream ErrorResponse, its text read in the client encoding when possible."""
        try:
            message = decode_backend(frame, self.encoding)
        except RemoteProtocolError:
            message = decode_backend(frame, _ANY_BYTES)
        assert isinstance(message, m.ErrorResponse)
        return message
