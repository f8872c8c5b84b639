"""Decode raw PostgreSQL v3 frames into messages.

Sans-I/O: callers get whole frames from :mod:`.framing` and hand them here.
Decoding is strict, like PostgreSQL's own ``pq_getmsg*`` readers: trailing
bytes, missing NUL terminators, impossible counts, invalid UTF-8 and unknown
type bytes raise :class:`RemoteProtocolError` (the peer's fault). No other
exception escapes. The other direction is :mod:`.encoder`.

Text fields are decoded in the session's client encoding (UTF-8 unless the
caller passes another :class:`~.encodings.ClientEncoding`). A 'p' frame
decodes as :class:`PasswordMessage`; only the
authentication exchange knows whether it holds a password, a SASL message or
GSS data, so the caller reinterprets it with :func:`as_password`,
:func:`as_sasl_initial_response` or :func:`as_sasl_response`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, TypeVar

from . import messages as m
from .encodings import UTF8, ClientEncoding
from .errors import ProtocolError, RemoteProtocolError
from .framing import MAX_STARTUP_PACKET, MIN_STARTUP_PACKET
from .wireformat import (
    INT8,
    INT16,
    INT32,
    UINT16,
    UINT32,
    UNSUPPORTED_PROTOCOL,
    Buffer,
    check_formats,
)

T = TypeVar("T")


# --- Reading -------------------------------------------------------------------------------


class _Reader:
    """Cursor over one frame's payload; every read is bounds-checked."""

    __slots__ = ("frame", "_pos", "_what", "_encoding")

    def __init__(self, frame: bytes, start: int, what: str,
                 encoding: ClientEncoding = UTF8) -> None:
        self.frame = frame
        self._pos = start
        self._what = what
        self._encoding = encoding

    def fail(self, problem: str) -> RemoteProtocolError:
        return RemoteProtocolError(f"invalid {self._what} message: {problem}")

    def _unpack(self, fmt: struct.Struct, name: str) -> int:
        if self._pos + fmt.size > len(self.frame):
            raise self.fail(f"message ends before {name}")
        (value,) = fmt.unpack_from(self.frame, self._pos)
        self._pos += fmt.size
        return int(value)

    def int8(self, name: str) -> int:
        return self._unpack(INT8, name)

    def int16(self, name: str) -> int:
        return self._unpack(INT16, name)

    def int32(self, name: str) -> int:
        return self._unpack(INT32, name)

    def uint32(self, name: str) -> int:
        return self._unpack(UINT32, name)

    def count(self, name: str, item_size: int, *, wide: bool = False) -> int:
        """A count of items at least ``item_size`` bytes each, checked against what is left.

        Int16 counts are read unsigned, as PostgreSQL reads them (65535 parameters is legal).
        """
        n = self._unpack(INT32, name) if wide else self._unpack(UINT16, name)
        if n < 0:
            raise self.fail(f"negative {name} {n}")
        if n * item_size > self.remaining:
            raise self.fail(f"{name} {n} exceeds the {self.remaining} bytes left")
        return n

    def int16s(self, name: str) -> tuple[int, ...]:
        n = self.count(f"number of {name}", 2)
        return tuple(self.int16(name) for _ in range(n))

    def cstring(self, name: str) -> str:
        end = self.frame.find(b"\0", self._pos)
        if end < 0:
            raise self.fail(f"missing NUL terminator after {name}")
        try:
            text = self.frame[self._pos:end].decode(self._encoding.codec)
        except UnicodeDecodeError as e:
            raise self.fail(f"{name} is not valid {self._encoding.name}") from e
        self._pos = end + 1
        return text

    def take(self, n: int, name: str) -> bytes:
        if n > self.remaining:
            raise self.fail(f"{name} of {n} bytes exceeds the {self.remaining} bytes left")
        data = self.frame[self._pos:self._pos + n]
        self._pos += n
        return data

    def value(self, name: str) -> bytes | None:
        """An Int32 length, -1 meaning NULL, then that many bytes."""
        n = self.int32(f"length of {name}")
        if n == -1:
            return None
        if n < 0:
            raise self.fail(f"invalid length {n} of {name}")
        return self.take(n, name)

    def values(self, name: str) -> tuple[bytes | None, ...]:
        n = self.count(f"number of {name}", 4)
        return tuple(self.value(name) for _ in range(n))

    def rest(self) -> bytes:
        data = self.frame[self._pos:]
        self._pos = len(self.frame)
        return data

    @property
    def remaining(self) -> int:
        return len(self.frame) - self._pos

    def finish(self) -> None:
        if self._pos != len(self.frame):
            raise self.fail(f"{self.remaining} unexpected bytes after the last field")


_Decoder = Callable[[_Reader], Any]


def _label(type_byte: int) -> str:
    return repr(chr(type_byte)) if 32 <= type_byte < 127 else f"0x{type_byte:02x}"


def _decode(data: Buffer, table: dict[int, tuple[str, Callable[[_Reader], T]]], side: str,
            encoding: ClientEncoding = UTF8) -> T:
    frame = bytes(data)
    if len(frame) < 5:
        raise RemoteProtocolError(f"{side} frame of {len(frame)} bytes is shorter than a header")
    type_byte, length = frame[0], int.from_bytes(frame[1:5], "big")
    if length != len(frame) - 1:
        raise RemoteProtocolError(
            f"{side} frame length word {length} does not match its {len(frame) - 1} bytes"
        )
    entry = table.get(type_byte)
    if entry is None:
        raise RemoteProtocolError(f"unknown {side} message type {_label(type_byte)}")
    name, decoder = entry
    return _run(decoder, _Reader(frame, 5, name, encoding))


def _run(decoder: Callable[[_Reader], T], reader: _Reader) -> T:
    try:
        message = decoder(reader)
        reader.finish()
    except ProtocolError:
        raise
    except (IndexError, ValueError, struct.error) as e:  # a bug in a decoder, never the peer's
        raise reader.fail(str(e)) from e
    return message


def decode_frontend(frame: Buffer, encoding: ClientEncoding = UTF8) -> m.FrontendMessage:
    """Decode one typed frame sent by a client (type byte and length word included); text
    fields are read in the session's client encoding."""
    return _decode(frame, _FRONTEND, "frontend", encoding)


def decode_backend(frame: Buffer, encoding: ClientEncoding = UTF8) -> m.BackendMessage:
    """Decode one typed frame sent by a server (type byte and length word included); text
    fields are read in the session's client encoding."""
    return _decode(frame, _BACKEND, "backend", encoding)


def decode_startup(data: Buffer) -> m.StartupPacket:
    """Decode one untyped startup packet (length word included).

    Any 3.x protocol version is accepted (the minor is on ``StartupMessage.minor``;
    the gateway answers a newer minor with NegotiateProtocolVersion). Any other
    major version is refused with SQLSTATE 0A000, as PostgreSQL does.
    """
    packet = bytes(data)
    if not MIN_STARTUP_PACKET <= len(packet) <= MAX_STARTUP_PACKET:
        raise RemoteProtocolError(f"invalid startup packet length {len(packet)}")
    length, code = struct.unpack_from("!II", packet)
    if length != len(packet):
        raise RemoteProtocolError(
            f"startup packet length word {length} does not match its {len(packet)} bytes"
        )
    reader = _Reader(packet, 8, "startup packet")
    request = _STARTUP_REQUESTS.get(code)
    if request is not None:
        return _run(request, reader)
    if code >> 16 != m.PROTOCOL_MAJOR:
        raise RemoteProtocolError(
            f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: server supports 3.x",
            sqlstate=UNSUPPORTED_PROTOCOL,
        )
    return _run(lambda r: _startup_message(r, code), reader)


def _cancel_request(r: _Reader) -> m.CancelRequest:
    process_id = r.int32("process ID")
    return m.CancelRequest(process_id, _secret_key(r), raw=r.frame)


def _secret_key(r: _Reader) -> bytes:
    key = r.rest()
    if not m.MIN_CANCEL_KEY <= len(key) <= m.MAX_CANCEL_KEY:
        raise r.fail(f"secret key of {len(key)} bytes, expected 4 to 256")
    return key


def _startup_message(r: _Reader, version: int) -> m.StartupMessage:
    parameters: dict[str, str] = {}
    while name := r.cstring("parameter name"):
        if name in parameters:
            raise r.fail(f"duplicate parameter {name!r}")
        parameters[name] = r.cstring(f"value of parameter {name!r}")
    return m.StartupMessage(version, parameters, raw=r.frame)


_STARTUP_REQUESTS: dict[int, Callable[[_Reader], m.StartupPacket]] = {
    m.SSL_REQUEST_CODE: lambda r: m.SSLRequest(raw=r.frame),
    m.GSSENC_REQUEST_CODE: lambda r: m.GSSENCRequest(raw=r.frame),
    m.CANCEL_REQUEST_CODE: _cancel_request,
}


# --- Reinterpreting 'p' frames ---------------------------------------------------------------


def as_password(msg: m.PasswordMessage) -> str:
    """The NUL-terminated password (cleartext or md5 hash) in a 'p' frame."""
    reader = _Reader(msg.data, 0, "PasswordMessage")
    return _run(lambda r: r.cstring("password"), reader)


def as_sasl_initial_response(msg: m.PasswordMessage) -> m.SASLInitialResponse:
    """Read a 'p' frame sent in reply to AuthenticationSASL; ``raw`` stays the 'p' frame."""
    reader = _Reader(msg.data, 0, "SASLInitialResponse")
    return _run(lambda r: _sasl_initial(r, msg.raw), reader)


def _sasl_initial(r: _Reader, raw: bytes) -> m.SASLInitialResponse:
    mechanism = r.cstring("mechanism name")
    if not mechanism:
        raise r.fail("empty mechanism name")
    return m.SASLInitialResponse(mechanism, r.value("initial response"), raw=raw)


def as_sasl_response(msg: m.PasswordMessage) -> m.SASLResponse:
    """Read a 'p' frame sent in reply to AuthenticationSASLContinue; ``raw`` stays the same."""
    return m.SASLResponse(msg.data, raw=msg.raw)


# --- Frontend decoders ---------------------------------------------------------------------


def _empty(cls: type) -> _Decoder:
    return lambda r: cls(raw=r.frame)


def _bind(r: _Reader) -> m.Bind:
    portal, statement = r.cstring("portal name"), r.cstring("statement name")
    param_formats = r.int16s("parameter format codes")
    params = r.values("parameters")
    check_formats(param_formats, params, r.fail)
    return m.Bind(portal, statement, param_formats, params, r.int16s("result format codes"),
                  raw=r.frame)


def _describe_or_close(cls: type) -> _Decoder:
    def decode(r: _Reader) -> Any:
        kind = r.take(1, "kind")
        if kind not in (b"S", b"P"):
            raise r.fail(f"kind {kind!r} is neither 'S' nor 'P'")
        return cls(kind.decode(), r.cstring("name"), raw=r.frame)

    return decode


def _function_call(r: _Reader) -> m.FunctionCall:
    oid = r.uint32("function OID")
    arg_formats = r.int16s("argument format codes")
    args = r.values("arguments")
    check_formats(arg_formats, args, r.fail)
    return m.FunctionCall(oid, arg_formats, args, r.int16("result format code"), raw=r.frame)


def _parse(r: _Reader) -> m.Parse:
    name, sql = r.cstring("statement name"), r.cstring("query")
    n = r.count("number of parameter types", 4)
    return m.Parse(name, sql, tuple(r.uint32("parameter type") for _ in range(n)), raw=r.frame)


_FRONTEND: dict[int, tuple[str, Callable[[_Reader], m.FrontendMessage]]] = {
    m.FrontendType.BIND: ("Bind", _bind),
    m.FrontendType.CLOSE: ("Close", _describe_or_close(m.Close)),
    m.FrontendType.COPY_DATA: ("CopyData", lambda r: m.CopyData(r.rest(), raw=r.frame)),
    m.FrontendType.COPY_DONE: ("CopyDone", _empty(m.CopyDone)),
    m.FrontendType.COPY_FAIL: (
        "CopyFail", lambda r: m.CopyFail(r.cstring("error message"), raw=r.frame)),
    m.FrontendType.DESCRIBE: ("Describe", _describe_or_close(m.Describe)),
    m.FrontendType.EXECUTE: (
        "Execute",
        lambda r: m.Execute(r.cstring("portal name"), r.int32("maximum rows"), raw=r.frame)),
    m.FrontendType.FLUSH: ("Flush", _empty(m.Flush)),
    m.FrontendType.FUNCTION_CALL: ("FunctionCall", _function_call),
    m.FrontendType.PARSE: ("Parse", _parse),
    m.FrontendType.PASSWORD: (
        "PasswordMessage", lambda r: m.PasswordMessage(r.rest(), raw=r.frame)),
    m.FrontendType.QUERY: ("Query", lambda r: m.Query(r.cstring("query"), raw=r.frame)),
    m.FrontendType.SYNC: ("Sync", _empty(m.Sync)),
    m.FrontendType.TERMINATE: ("Terminate", _empty(m.Terminate)),
}


# --- Backend decoders ----------------------------------------------------------------------


def _authentication(r: _Reader) -> m.AuthenticationMessage:
    code = r.int32("authentication code")
    if code in m.OTHER_AUTH_CODES:
        data = r.rest()
        if data and code != m.AuthCode.GSS_CONTINUE:
            raise r.fail(f"authentication code {code} carries no data")
        return m.AuthenticationOther(code, data, raw=r.frame)
    decoder = _AUTHENTICATION.get(code)
    if decoder is None:
        raise r.fail(f"unknown authentication code {code}")
    return decoder(r)


def _sasl_mechanisms(r: _Reader) -> m.AuthenticationSASL:
    mechanisms: list[str] = []
    while name := r.cstring("mechanism name"):
        mechanisms.append(name)
    return m.AuthenticationSASL(tuple(mechanisms), raw=r.frame)


_AUTHENTICATION: dict[int, Callable[[_Reader], m.AuthenticationMessage]] = {
    m.AuthCode.OK: _empty(m.AuthenticationOk),
    m.AuthCode.CLEARTEXT_PASSWORD: _empty(m.AuthenticationCleartextPassword),
    m.AuthCode.MD5_PASSWORD: lambda r: m.AuthenticationMD5Password(r.take(4, "salt"), raw=r.frame),
    m.AuthCode.SASL: _sasl_mechanisms,
    m.AuthCode.SASL_CONTINUE: lambda r: m.AuthenticationSASLContinue(r.rest(), raw=r.frame),
    m.AuthCode.SASL_FINAL: lambda r: m.AuthenticationSASLFinal(r.rest(), raw=r.frame),
}


def _field(r: _Reader) -> m.FieldDescription:
    return m.FieldDescription(
        r.cstring("field name"), r.uint32("table OID"), r.int16("column number"),
        r.uint32("type OID"), r.int16("type size"), r.int32("type modifier"),
        r.int16("format code"),
    )


def _row_description(r: _Reader) -> m.RowDescription:
    n = r.count("number of fields", 19)  # NUL of the name and 18 bytes of numbers
    return m.RowDescription(tuple(_field(r) for _ in range(n)), raw=r.frame)


def _fields(cls: type) -> _Decoder:
    """ErrorResponse and NoticeResponse: code byte and string pairs, then a NUL."""

    def decode(r: _Reader) -> Any:
        fields: dict[str, str] = {}
        while code := r.take(1, "field code")[0]:
            if code >= 128:
                raise r.fail(f"field code 0x{code:02x} is not ASCII")
            key = chr(code)
            if key in fields:
                raise r.fail(f"duplicate field {key!r}")
            fields[key] = r.cstring(f"field {key!r}")
        return cls(fields, raw=r.frame)

    return decode


def _copy_response(cls: type) -> _Decoder:
    def decode(r: _Reader) -> Any:
        overall = r.int8("overall format")
        return cls(overall, r.int16s("column format codes"), raw=r.frame)

    return decode


def _negotiate(r: _Reader) -> m.NegotiateProtocolVersion:
    # The docs call this the newest minor version, but servers send the whole version number
    # (3 << 16 | minor), and libpq reads it that way.
    version = r.uint32("protocol version")
    if version >> 16 != m.PROTOCOL_MAJOR:
        raise r.fail(f"protocol version {version >> 16}.{version & 0xFFFF} is not 3.x")
    n = r.count("number of unrecognized options", 1, wide=True)
    options = tuple(r.cstring("option name") for _ in range(n))
    return m.NegotiateProtocolVersion(version & 0xFFFF, options, raw=r.frame)


def _parameter_description(r: _Reader) -> m.ParameterDescription:
    n = r.count("number of parameters", 4)
    return m.ParameterDescription(tuple(r.uint32("type OID") for _ in range(n)), raw=r.frame)


def _ready_for_query(r: _Reader) -> m.ReadyForQuery:
    status = r.take(1, "transaction status")
    if status not in (b"I", b"T", b"E"):
        raise r.fail(f"transaction status {status!r} is not 'I', 'T' or 'E'")
    return m.ReadyForQuery(status.decode(), raw=r.frame)


def _notification(r: _Reader) -> m.NotificationResponse:
    pid = r.int32("process ID")
    channel, payload = r.cstring("channel"), r.cstring("payload")
    return m.NotificationResponse(pid, channel, payload, raw=r.frame)


_BACKEND: dict[int, tuple[str, Callable[[_Reader], m.BackendMessage]]] = {
    m.BackendType.AUTHENTICATION: ("Authentication", _authentication),
    m.BackendType.BACKEND_KEY_DATA: (
        "BackendKeyData",
        lambda r: m.BackendKeyData(r.int32("process ID"), _secret_key(r), raw=r.frame)),
    m.BackendType.BIND_COMPLETE: ("BindComplete", _empty(m.BindComplete)),
    m.BackendType.CLOSE_COMPLETE: ("CloseComplete", _empty(m.CloseComplete)),
    m.BackendType.COMMAND_COMPLETE: (
        "CommandComplete", lambda r: m.CommandComplete(r.cstring("command tag"), raw=r.frame)),
    m.BackendType.COPY_BOTH_RESPONSE: ("CopyBothResponse", _copy_response(m.CopyBothResponse)),
    m.BackendType.COPY_DATA: ("CopyData", lambda r: m.CopyData(r.rest(), raw=r.frame)),
    m.BackendType.COPY_DONE: ("CopyDone", _empty(m.CopyDone)),
    m.BackendType.COPY_IN_RESPONSE: ("CopyInResponse", _copy_response(m.CopyInResponse)),
    m.BackendType.COPY_OUT_RESPONSE: ("CopyOutResponse", _copy_response(m.CopyOutResponse)),
    m.BackendType.DATA_ROW: ("DataRow", lambda r: m.DataRow(r.values("columns"), raw=r.frame)),
    m.BackendType.EMPTY_QUERY_RESPONSE: ("EmptyQueryResponse", _empty(m.EmptyQueryResponse)),
    m.BackendType.ERROR_RESPONSE: ("ErrorResponse", _fields(m.ErrorResponse)),
    m.BackendType.FUNCTION_CALL_RESPONSE: (
        "FunctionCallResponse",
        lambda r: m.FunctionCallResponse(r.value("result"), raw=r.frame)),
    m.BackendType.NEGOTIATE_PROTOCOL_VERSION: ("NegotiateProtocolVersion", _negotiate),
    m.BackendType.NO_DATA: ("NoData", _empty(m.NoData)),
    m.BackendType.NOTICE_RESPONSE: ("NoticeResponse", _fields(m.NoticeResponse)),
    m.BackendType.NOTIFICATION_RESPONSE: ("NotificationResponse", _notification),
    m.BackendType.PARAMETER_DESCRIPTION: ("ParameterDescription", _parameter_description),
    m.BackendType.PARAMETER_STATUS: (
        "ParameterStatus",
        lambda r: m.ParameterStatus(r.cstring("name"), r.cstring("value"), raw=r.frame)),
    m.BackendType.PARSE_COMPLETE: ("ParseComplete", _empty(m.ParseComplete)),
    m.BackendType.PORTAL_SUSPENDED: ("PortalSuspended", _empty(m.PortalSuspended)),
    m.BackendType.READY_FOR_QUERY: ("ReadyForQuery", _ready_for_query),
    m.BackendType.ROW_DESCRIPTION: ("RowDescription", _row_description),
}
