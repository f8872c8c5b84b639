"""Decode raw PostgreSQL v3 frames into messages, and encode messages into frames.

Sans-I/O: callers get whole frames from :mod:`.framing` and hand them here.
Decoding is strict, like PostgreSQL's own ``pq_getmsg*`` readers: trailing
bytes, missing NUL terminators, impossible counts, invalid UTF-8 and unknown
type bytes raise :class:`RemoteProtocolError` (the peer's fault); fields that
cannot go on the wire raise :class:`LocalProtocolError` from :func:`encode`.
No other exception escapes either direction.

Text fields are decoded as UTF-8, so the gateway must keep ``client_encoding``
at UTF8. A 'p' frame decodes as :class:`PasswordMessage`; only the
authentication exchange knows whether it holds a password, a SASL message or
GSS data, so the caller reinterprets it with :func:`as_password`,
:func:`as_sasl_initial_response` or :func:`as_sasl_response`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeAlias, TypeVar

from . import messages as m
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .framing import MAX_STARTUP_PACKET, MIN_STARTUP_PACKET

_INT8 = struct.Struct("!b")
_INT16 = struct.Struct("!h")
_UINT16 = struct.Struct("!H")
_INT32 = struct.Struct("!i")
_UINT32 = struct.Struct("!I")
_HEADER = struct.Struct("!cI")

INT16_MIN, INT16_MAX = -(2**15), 2**15 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
UINT16_MAX = 2**16 - 1
UINT32_MAX = 2**32 - 1
# A length word is an Int32 that counts itself.
MAX_FRAME_LENGTH: Final = INT32_MAX
UNSUPPORTED_PROTOCOL: Final = "0A000"  # feature_not_supported, as PostgreSQL answers

Buffer: TypeAlias = bytes | bytearray | memoryview
T = TypeVar("T")


# --- Reading -------------------------------------------------------------------------------


class _Reader:
    """Cursor over one frame's payload; every read is bounds-checked."""

    __slots__ = ("frame", "_pos", "_what")

    def __init__(self, frame: bytes, start: int, what: str) -> None:
        self.frame = frame
        self._pos = start
        self._what = what

    def fail(self, problem: str) -> RemoteProtocolError:
        return RemoteProtocolError(f"invalid {self._what} message: {problem}")

    def _unpack(self, fmt: struct.Struct, name: str) -> int:
        if self._pos + fmt.size > len(self.frame):
            raise self.fail(f"message ends before {name}")
        (value,) = fmt.unpack_from(self.frame, self._pos)
        self._pos += fmt.size
        return int(value)

    def int8(self, name: str) -> int:
        return self._unpack(_INT8, name)

    def int16(self, name: str) -> int:
        return self._unpack(_INT16, name)

    def int32(self, name: str) -> int:
        return self._unpack(_INT32, name)

    def uint32(self, name: str) -> int:
        return self._unpack(_UINT32, name)

    def count(self, name: str, item_size: int, *, wide: bool = False) -> int:
        """A count of items at least ``item_size`` bytes each, checked against what is left.

        Int16 counts are read unsigned, as PostgreSQL reads them (65535 parameters is legal).
        """
        n = self._unpack(_INT32, name) if wide else self._unpack(_UINT16, name)
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
            text = self.frame[self._pos:end].decode("utf-8")
        except UnicodeDecodeError as e:
            raise self.fail(f"{name} is not valid UTF-8") from e
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


def _decode(data: Buffer, table: dict[int, tuple[str, Callable[[_Reader], T]]], side: str) -> T:
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
    return _run(decoder, _Reader(frame, 5, name))


def _run(decoder: Callable[[_Reader], T], reader: _Reader) -> T:
    try:
        message = decoder(reader)
        reader.finish()
    except ProtocolError:
        raise
    except (IndexError, ValueError, struct.error) as e:  # a bug in a decoder, never the peer's
        raise reader.fail(str(e)) from e
    return message


def decode_frontend(frame: Buffer) -> m.FrontendMessage:
    """Decode one typed frame sent by a client (type byte and length word included)."""
    return _decode(frame, _FRONTEND, "frontend")


def decode_backend(frame: Buffer) -> m.BackendMessage:
    """Decode one typed frame sent by a server (type byte and length word included)."""
    return _decode(frame, _BACKEND, "backend")


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
    _check_formats(param_formats, params, r.fail)
    return m.Bind(portal, statement, param_formats, params, r.int16s("result format codes"),
                  raw=r.frame)


def _check_formats(formats: tuple[int, ...], values: tuple[Any, ...],
                   fail: Callable[[str], ProtocolError]) -> None:
    """One format code per value, or a single code for all, or none (all text)."""
    if len(formats) > 1 and len(formats) != len(values):
        raise fail(f"{len(formats)} format codes for {len(values)} values")


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
    _check_formats(arg_formats, args, r.fail)
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


# --- Writing -------------------------------------------------------------------------------


class _Writer:
    """Collects one message's payload; every field is range- and type-checked."""

    __slots__ = ("parts", "_what")

    def __init__(self, what: str) -> None:
        self.parts: list[bytes] = []
        self._what = what

    def fail(self, problem: str) -> LocalProtocolError:
        return LocalProtocolError(f"cannot encode {self._what}: {problem}")

    def _pack(self, fmt: struct.Struct, lo: int, hi: int, value: object, name: str) -> None:
        if not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(f"{name} {value!r} is not an integer in {lo}..{hi}")
        self.parts.append(fmt.pack(value))

    def int8(self, value: object, name: str) -> None:
        self._pack(_INT8, -128, 127, value, name)

    def int16(self, value: object, name: str) -> None:
        self._pack(_INT16, INT16_MIN, INT16_MAX, value, name)

    def int32(self, value: object, name: str) -> None:
        self._pack(_INT32, INT32_MIN, INT32_MAX, value, name)

    def uint32(self, value: object, name: str) -> None:
        self._pack(_UINT32, 0, UINT32_MAX, value, name)

    def count(self, items: Iterable[object], name: str) -> None:
        self._pack(_UINT16, 0, UINT16_MAX, len(tuple(items)), f"number of {name}")

    def int16s(self, values: tuple[int, ...], name: str) -> None:
        self.count(values, name)
        for v in values:
            self.int16(v, name)

    def cstring(self, text: object, name: str, *, empty: bool = True) -> None:
        if not isinstance(text, str):
            raise self.fail(f"{name} {text!r} is not a str")
        if "\0" in text:
            raise self.fail(f"{name} contains a NUL character")
        if not text and not empty:
            raise self.fail(f"{name} is empty")
        self.parts.append(text.encode("utf-8") + b"\0")

    def as_bytes(self, data: object, name: str) -> bytes:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise self.fail(f"{name} is {type(data).__name__}, not bytes")
        return bytes(data)

    def data(self, data: object, name: str) -> None:
        self.parts.append(self.as_bytes(data, name))

    def value(self, data: object, name: str) -> None:
        """An Int32 length, -1 for None, then the bytes."""
        if data is None:
            self.int32(-1, f"length of {name}")
            return
        raw = self.as_bytes(data, name)
        self.int32(len(raw), f"length of {name}")
        self.parts.append(raw)

    def values(self, values: tuple[bytes | None, ...], name: str) -> None:
        self.count(values, name)
        for v in values:
            self.value(v, name)

    def frame(self, type_byte: int | None) -> bytes:
        payload = b"".join(self.parts)
        length = len(payload) + 4
        if type_byte is None:
            if length > MAX_STARTUP_PACKET:
                raise self.fail(f"{length} bytes is over the startup limit {MAX_STARTUP_PACKET}")
            return _UINT32.pack(length) + payload
        if length > MAX_FRAME_LENGTH:
            raise self.fail(f"{length} bytes does not fit a length word")
        return _HEADER.pack(bytes((type_byte,)), length) + payload


_Encoder = Callable[[_Writer, Any], None]


def encode(msg: m.Message) -> bytes:
    """The wire bytes of ``msg``; SASLInitialResponse and SASLResponse go out as 'p' frames.

    ``msg.raw`` is ignored: the frame is always rebuilt from the fields.
    """
    entry = _ENCODERS.get(type(msg))
    if entry is None:
        raise LocalProtocolError(f"{type(msg).__name__} is not a PostgreSQL message")
    type_byte, write = entry
    writer = _Writer(type(msg).__name__)
    try:
        write(writer, msg)
    except ProtocolError:
        raise
    except (TypeError, ValueError, AttributeError, struct.error, OverflowError) as e:
        raise writer.fail(str(e)) from e
    return writer.frame(type_byte)


def _nothing(w: _Writer, msg: Any) -> None:
    pass


def _write_startup(w: _Writer, msg: m.StartupMessage) -> None:
    w.uint32(msg.protocol_version, "protocol version")
    if msg.major != m.PROTOCOL_MAJOR:
        raise w.fail(f"protocol version {msg.major}.{msg.minor} is not 3.x")
    for name, value in msg.parameters.items():
        w.cstring(name, "parameter name", empty=False)
        w.cstring(value, f"value of parameter {name!r}")
    w.parts.append(b"\0")


def _code(code: int) -> _Encoder:
    return lambda w, msg: w.uint32(code, "request code")


def _write_key(w: _Writer, process_id: int, key: bytes) -> None:
    w.int32(process_id, "process ID")
    key = w.as_bytes(key, "secret key")
    if not m.MIN_CANCEL_KEY <= len(key) <= m.MAX_CANCEL_KEY:
        raise w.fail(f"secret key of {len(key)} bytes, expected 4 to 256")
    w.parts.append(key)


def _write_cancel(w: _Writer, msg: m.CancelRequest) -> None:
    w.uint32(m.CANCEL_REQUEST_CODE, "request code")
    _write_key(w, msg.process_id, msg.secret_key)


def _write_parse(w: _Writer, msg: m.Parse) -> None:
    w.cstring(msg.name, "statement name")
    w.cstring(msg.sql, "query")
    w.count(msg.param_types, "parameter types")
    for oid in msg.param_types:
        w.uint32(oid, "parameter type")


def _write_bind(w: _Writer, msg: m.Bind) -> None:
    w.cstring(msg.portal, "portal name")
    w.cstring(msg.statement, "statement name")
    _check_formats(tuple(msg.param_formats), tuple(msg.params), w.fail)
    w.int16s(msg.param_formats, "parameter format codes")
    w.values(msg.params, "parameters")
    w.int16s(msg.result_formats, "result format codes")


def _write_kind(w: _Writer, msg: m.Describe | m.Close) -> None:
    if msg.kind not in ("S", "P"):
        raise w.fail(f"kind {msg.kind!r} is neither 'S' nor 'P'")
    w.parts.append(msg.kind.encode())
    w.cstring(msg.name, "name")


def _write_execute(w: _Writer, msg: m.Execute) -> None:
    w.cstring(msg.portal, "portal name")
    w.int32(msg.max_rows, "maximum rows")


def _write_function_call(w: _Writer, msg: m.FunctionCall) -> None:
    w.uint32(msg.function_oid, "function OID")
    _check_formats(tuple(msg.arg_formats), tuple(msg.args), w.fail)
    w.int16s(msg.arg_formats, "argument format codes")
    w.values(msg.args, "arguments")
    w.int16(msg.result_format, "result format code")


def _write_sasl_initial(w: _Writer, msg: m.SASLInitialResponse) -> None:
    w.cstring(msg.mechanism, "mechanism name", empty=False)
    w.value(msg.data, "initial response")


def _auth(code: int, rest: _Encoder = _nothing) -> _Encoder:
    def write(w: _Writer, msg: Any) -> None:
        w.int32(code, "authentication code")
        rest(w, msg)

    return write


def _write_salt(w: _Writer, msg: m.AuthenticationMD5Password) -> None:
    salt = w.as_bytes(msg.salt, "salt")
    if len(salt) != 4:
        raise w.fail(f"salt of {len(salt)} bytes, expected 4")
    w.parts.append(salt)


def _write_mechanisms(w: _Writer, msg: m.AuthenticationSASL) -> None:
    for name in msg.mechanisms:
        w.cstring(name, "mechanism name", empty=False)
    w.parts.append(b"\0")


def _write_auth_other(w: _Writer, msg: m.AuthenticationOther) -> None:
    if msg.code not in m.OTHER_AUTH_CODES:
        raise w.fail(f"authentication code {msg.code!r} has its own message class")
    if msg.data and msg.code != m.AuthCode.GSS_CONTINUE:
        raise w.fail(f"authentication code {msg.code} carries no data")
    w.int32(msg.code, "authentication code")
    w.data(msg.data, "data")


def _write_ready(w: _Writer, msg: m.ReadyForQuery) -> None:
    if msg.status not in ("I", "T", "E"):
        raise w.fail(f"transaction status {msg.status!r} is not 'I', 'T' or 'E'")
    w.parts.append(msg.status.encode())


def _write_row_description(w: _Writer, msg: m.RowDescription) -> None:
    w.count(msg.fields, "fields")
    for f in msg.fields:
        w.cstring(f.name, "field name")
        w.uint32(f.table_oid, "table OID")
        w.int16(f.column_number, "column number")
        w.uint32(f.type_oid, "type OID")
        w.int16(f.type_size, "type size")
        w.int32(f.type_modifier, "type modifier")
        w.int16(f.format, "format code")


def _write_fields(w: _Writer, msg: m.ErrorResponse | m.NoticeResponse) -> None:
    for key, text in msg.fields.items():
        if not (isinstance(key, str) and len(key) == 1 and 0 < ord(key) < 128):
            raise w.fail(f"field code {key!r} is not one ASCII character")
        w.parts.append(key.encode())
        w.cstring(text, f"field {key!r}")
    w.parts.append(b"\0")


def _write_notification(w: _Writer, msg: m.NotificationResponse) -> None:
    w.int32(msg.process_id, "process ID")
    w.cstring(msg.channel, "channel")
    w.cstring(msg.payload, "payload")


def _write_negotiate(w: _Writer, msg: m.NegotiateProtocolVersion) -> None:
    if not isinstance(msg.newest_minor, int) or not 0 <= msg.newest_minor <= UINT16_MAX:
        raise w.fail(f"minor version {msg.newest_minor!r} is not in 0..{UINT16_MAX}")
    w.uint32(m.PROTOCOL_MAJOR << 16 | msg.newest_minor, "protocol version")
    w.int32(len(msg.unrecognized), "number of unrecognized options")
    for name in msg.unrecognized:
        w.cstring(name, "option name")


def _write_copy_response(w: _Writer, msg: Any) -> None:
    w.int8(msg.overall_format, "overall format")
    w.int16s(msg.column_formats, "column format codes")


def _write_parameter_status(w: _Writer, msg: m.ParameterStatus) -> None:
    w.cstring(msg.name, "name")
    w.cstring(msg.value, "value")


def _write_parameter_description(w: _Writer, msg: m.ParameterDescription) -> None:
    w.count(msg.type_oids, "parameters")
    for oid in msg.type_oids:
        w.uint32(oid, "type OID")


_F, _B, _A = m.FrontendType, m.BackendType, m.AuthCode
_ENCODERS: dict[type, tuple[int | None, _Encoder]] = {
    # startup packets have no type byte
    m.StartupMessage: (None, _write_startup),
    m.SSLRequest: (None, _code(m.SSL_REQUEST_CODE)),
    m.GSSENCRequest: (None, _code(m.GSSENC_REQUEST_CODE)),
    m.CancelRequest: (None, _write_cancel),
    # frontend
    m.Query: (_F.QUERY, lambda w, msg: w.cstring(msg.sql, "query")),
    m.Parse: (_F.PARSE, _write_parse),
    m.Bind: (_F.BIND, _write_bind),
    m.Describe: (_F.DESCRIBE, _write_kind),
    m.Execute: (_F.EXECUTE, _write_execute),
    m.Sync: (_F.SYNC, _nothing),
    m.Flush: (_F.FLUSH, _nothing),
    m.Close: (_F.CLOSE, _write_kind),
    m.CopyData: (_F.COPY_DATA, lambda w, msg: w.data(msg.data, "data")),
    m.CopyDone: (_F.COPY_DONE, _nothing),
    m.CopyFail: (_F.COPY_FAIL, lambda w, msg: w.cstring(msg.message, "error message")),
    m.FunctionCall: (_F.FUNCTION_CALL, _write_function_call),
    m.Terminate: (_F.TERMINATE, _nothing),
    m.PasswordMessage: (_F.PASSWORD, lambda w, msg: w.data(msg.data, "data")),
    m.SASLInitialResponse: (_F.PASSWORD, _write_sasl_initial),
    m.SASLResponse: (_F.PASSWORD, lambda w, msg: w.data(msg.data, "data")),
    # backend
    m.AuthenticationOk: (_B.AUTHENTICATION, _auth(_A.OK)),
    m.AuthenticationCleartextPassword: (_B.AUTHENTICATION, _auth(_A.CLEARTEXT_PASSWORD)),
    m.AuthenticationMD5Password: (_B.AUTHENTICATION, _auth(_A.MD5_PASSWORD, _write_salt)),
    m.AuthenticationSASL: (_B.AUTHENTICATION, _auth(_A.SASL, _write_mechanisms)),
    m.AuthenticationSASLContinue: (
        _B.AUTHENTICATION, _auth(_A.SASL_CONTINUE, lambda w, msg: w.data(msg.data, "data"))),
    m.AuthenticationSASLFinal: (
        _B.AUTHENTICATION, _auth(_A.SASL_FINAL, lambda w, msg: w.data(msg.data, "data"))),
    m.AuthenticationOther: (_B.AUTHENTICATION, _write_auth_other),
    m.ParameterStatus: (_B.PARAMETER_STATUS, _write_parameter_status),
    m.BackendKeyData: (
        _B.BACKEND_KEY_DATA, lambda w, msg: _write_key(w, msg.process_id, msg.secret_key)),
    m.ReadyForQuery: (_B.READY_FOR_QUERY, _write_ready),
    m.RowDescription: (_B.ROW_DESCRIPTION, _write_row_description),
    m.DataRow: (_B.DATA_ROW, lambda w, msg: w.values(msg.values, "columns")),
    m.CommandComplete: (_B.COMMAND_COMPLETE, lambda w, msg: w.cstring(msg.tag, "command tag")),
    m.EmptyQueryResponse: (_B.EMPTY_QUERY_RESPONSE, _nothing),
    m.ParameterDescription: (_B.PARAMETER_DESCRIPTION, _write_parameter_description),
    m.NoData: (_B.NO_DATA, _nothing),
    m.PortalSuspended: (_B.PORTAL_SUSPENDED, _nothing),
    m.ParseComplete: (_B.PARSE_COMPLETE, _nothing),
    m.BindComplete: (_B.BIND_COMPLETE, _nothing),
    m.CloseComplete: (_B.CLOSE_COMPLETE, _nothing),
    m.ErrorResponse: (_B.ERROR_RESPONSE, _write_fields),
    m.NoticeResponse: (_B.NOTICE_RESPONSE, _write_fields),
    m.NotificationResponse: (_B.NOTIFICATION_RESPONSE, _write_notification),
    m.NegotiateProtocolVersion: (_B.NEGOTIATE_PROTOCOL_VERSION, _write_negotiate),
    m.CopyInResponse: (_B.COPY_IN_RESPONSE, _write_copy_response),
    m.CopyOutResponse: (_B.COPY_OUT_RESPONSE, _write_copy_response),
    m.CopyBothResponse: (_B.COPY_BOTH_RESPONSE, _write_copy_response),
    m.FunctionCallResponse: (
        _B.FUNCTION_CALL_RESPONSE, lambda w, msg: w.value(msg.result, "result")),
}
