"""Encode messages into PostgreSQL v3 frames.

Sans-I/O, the other direction of :mod:`.decoder`: fields that cannot go on the
wire (out of range, wrong type, a NUL inside a string) raise
:class:`LocalProtocolError` (our fault); no other exception escapes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

from . import messages as m
from .errors import LocalProtocolError, ProtocolError
from .framing import MAX_STARTUP_PACKET
from .wireformat import (
    HEADER,
    INT8,
    INT16,
    INT16_MAX,
    INT16_MIN,
    INT32,
    INT32_MAX,
    INT32_MIN,
    MAX_FRAME_LENGTH,
    UINT16,
    UINT16_MAX,
    UINT32,
    UINT32_MAX,
    check_formats,
)

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
        self._pack(INT8, -128, 127, value, name)

    def int16(self, value: object, name: str) -> None:
        self._pack(INT16, INT16_MIN, INT16_MAX, value, name)

    def int32(self, value: object, name: str) -> None:
        self._pack(INT32, INT32_MIN, INT32_MAX, value, name)

    def uint32(self, value: object, name: str) -> None:
        self._pack(UINT32, 0, UINT32_MAX, value, name)

    def count(self, items: Iterable[object], name: str) -> None:
        self._pack(UINT16, 0, UINT16_MAX, len(tuple(items)), f"number of {name}")

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
            return UINT32.pack(length) + payload
        if length > MAX_FRAME_LENGTH:
            raise self.fail(f"{length} bytes does not fit a length word")
        return HEADER.pack(bytes((type_byte,)), length) + payload


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
    check_formats(tuple(msg.param_formats), tuple(msg.params), w.fail)
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
    check_formats(tuple(msg.arg_formats), tuple(msg.args), w.fail)
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
