"""Golden bytes for every message, fed whole, byte by byte and with trailing garbage.

Expected bytes are written out by hand from the PostgreSQL protocol docs, so an
encoder and decoder that agree with each other but not with PostgreSQL fail here.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from protocols.postgres import decoder, encoder
from protocols.postgres import messages as m
from protocols.postgres.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from protocols.postgres.framing import FrameBuffer

KEY32 = bytes(range(32))
SCRAM = "SCRAM-SHA-256"


def _sasl_initial(frame: decoder.Buffer) -> Any:
    return decoder.as_sasl_initial_response(decoder.decode_frontend(frame))  # type: ignore[arg-type]


def _sasl(frame: decoder.Buffer) -> Any:
    return decoder.as_sasl_response(decoder.decode_frontend(frame))  # type: ignore[arg-type]


DECODERS: dict[str, Callable[[decoder.Buffer], Any]] = {
    "startup": decoder.decode_startup,
    "frontend": decoder.decode_frontend,
    "backend": decoder.decode_backend,
    "sasl_initial": _sasl_initial,
    "sasl": _sasl,
}

# (side, message, wire bytes, open_ended): open-ended payloads end in "the rest of the
# message" (CopyData, a cancel key, SASL data), so a byte more or less is still valid.
GOLDEN: list[tuple[str, Any, bytes, bool]] = [
    # --- startup
    ("startup", m.StartupMessage(m.PROTOCOL_3_0, {"user": "alice", "database": "db"}),
     b"\x00\x00\x00\x20\x00\x03\x00\x00user\x00alice\x00database\x00db\x00\x00", False),
    ("startup", m.StartupMessage(m.PROTOCOL_3_0 | 2, {"user": "u"}),
     b"\x00\x00\x00\x10\x00\x03\x00\x02user\x00u\x00\x00", False),
    ("startup", m.SSLRequest(), b"\x00\x00\x00\x08\x04\xd2\x16\x2f", False),
    ("startup", m.GSSENCRequest(), b"\x00\x00\x00\x08\x04\xd2\x16\x30", False),
    ("startup", m.CancelRequest(1234, b"\x01\x02\x03\x04"),
     b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x04\xd2\x01\x02\x03\x04", True),
    ("startup", m.CancelRequest(7, KEY32),
     b"\x00\x00\x00\x2c\x04\xd2\x16\x2e\x00\x00\x00\x07" + KEY32, True),
    # --- frontend
    ("frontend", m.Query("SELECT 1"), b"Q\x00\x00\x00\rSELECT 1\x00", False),
    ("frontend", m.Parse("s1", "SELECT $1", (23,)),
     b"P\x00\x00\x00\x17s1\x00SELECT $1\x00\x00\x01\x00\x00\x00\x17", False),
    ("frontend", m.Parse("", "SELECT 1"), b"P\x00\x00\x00\x10\x00SELECT 1\x00\x00\x00", False),
    ("frontend", m.Bind("p1", "s1", (1,), (b"\x00\x00\x00\x2a", None), (0, 1)),
     b"B\x00\x00\x00\x22p1\x00s1\x00\x00\x01\x00\x01\x00\x02"
     b"\x00\x00\x00\x04\x00\x00\x00\x2a\xff\xff\xff\xff\x00\x02\x00\x00\x00\x01", False),
    ("frontend", m.Bind("", ""), b"B\x00\x00\x00\x0c\x00\x00\x00\x00\x00\x00\x00\x00", False),
    ("frontend", m.Describe("S", "s1"), b"D\x00\x00\x00\x08Ss1\x00", False),
    ("frontend", m.Describe("P", ""), b"D\x00\x00\x00\x06P\x00", False),
    ("frontend", m.Execute(""), b"E\x00\x00\x00\x09\x00\x00\x00\x00\x00", False),
    ("frontend", m.Execute("p1", 100), b"E\x00\x00\x00\x0bp1\x00\x00\x00\x00\x64", False),
    ("frontend", m.Sync(), b"S\x00\x00\x00\x04", False),
    ("frontend", m.Flush(), b"H\x00\x00\x00\x04", False),
    ("frontend", m.Close("P", "p1"), b"C\x00\x00\x00\x08Pp1\x00", False),
    ("frontend", m.CopyData(b"1\t2\n"), b"d\x00\x00\x00\x081\t2\n", True),
    ("frontend", m.CopyDone(), b"c\x00\x00\x00\x04", False),
    ("frontend", m.CopyFail("boom"), b"f\x00\x00\x00\x09boom\x00", False),
    ("frontend", m.FunctionCall(1598, (1,), (b"\x00\x00\x00\x01",), 1),
     b"F\x00\x00\x00\x18\x00\x00\x06\x3e\x00\x01\x00\x01\x00\x01"
     b"\x00\x00\x00\x04\x00\x00\x00\x01\x00\x01", False),
    ("frontend", m.Terminate(), b"X\x00\x00\x00\x04", False),
    ("frontend", m.PasswordMessage(b"secret\x00"), b"p\x00\x00\x00\x0bsecret\x00", True),
    ("sasl_initial", m.SASLInitialResponse(SCRAM, b"n,,n=,r=abc"),
     b"p\x00\x00\x00\x21SCRAM-SHA-256\x00\x00\x00\x00\x0bn,,n=,r=abc", False),
    ("sasl_initial", m.SASLInitialResponse(SCRAM, None),
     b"p\x00\x00\x00\x16SCRAM-SHA-256\x00\xff\xff\xff\xff", False),
    ("sasl", m.SASLResponse(b"c=biws,r=abc,p=xyz"),
     b"p\x00\x00\x00\x16c=biws,r=abc,p=xyz", True),
    # --- backend
    ("backend", m.AuthenticationOk(), b"R\x00\x00\x00\x08\x00\x00\x00\x00", False),
    ("backend", m.AuthenticationCleartextPassword(), b"R\x00\x00\x00\x08\x00\x00\x00\x03", False),
    ("backend", m.AuthenticationMD5Password(b"\x01\x02\x03\x04"),
     b"R\x00\x00\x00\x0c\x00\x00\x00\x05\x01\x02\x03\x04", False),
    ("backend", m.AuthenticationSASL(("SCRAM-SHA-256-PLUS", SCRAM)),
     b"R\x00\x00\x00\x2a\x00\x00\x00\x0aSCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00", False),
    ("backend", m.AuthenticationSASLContinue(b"r=abc,s=c2FsdA==,i=4096"),
     b"R\x00\x00\x00\x1f\x00\x00\x00\x0br=abc,s=c2FsdA==,i=4096", True),
    ("backend", m.AuthenticationSASLFinal(b"v=xyz"),
     b"R\x00\x00\x00\x0d\x00\x00\x00\x0cv=xyz", True),
    ("backend", m.AuthenticationOther(m.AuthCode.GSS), b"R\x00\x00\x00\x08\x00\x00\x00\x07", False),
    ("backend", m.AuthenticationOther(m.AuthCode.GSS_CONTINUE, b"tok"),
     b"R\x00\x00\x00\x0b\x00\x00\x00\x08tok", True),
    ("backend", m.ParameterStatus("client_encoding", "UTF8"),
     b"S\x00\x00\x00\x19client_encoding\x00UTF8\x00", False),
    ("backend", m.BackendKeyData(4242, b"\xde\xad\xbe\xef"),
     b"K\x00\x00\x00\x0c\x00\x00\x10\x92\xde\xad\xbe\xef", True),
    ("backend", m.BackendKeyData(1, KEY32), b"K\x00\x00\x00\x28\x00\x00\x00\x01" + KEY32, True),
    ("backend", m.ReadyForQuery("I"), b"Z\x00\x00\x00\x05I", False),
    ("backend", m.ReadyForQuery("T"), b"Z\x00\x00\x00\x05T", False),
    ("backend", m.ReadyForQuery("E"), b"Z\x00\x00\x00\x05E", False),
    ("backend", m.RowDescription((m.FieldDescription("?column?", 0, 0, 23, 4, -1, 0),)),
     b"T\x00\x00\x00\x21\x00\x01?column?\x00\x00\x00\x00\x00\x00\x00"
     b"\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00", False),
    ("backend", m.DataRow((b"1", None, b"")),
     b"D\x00\x00\x00\x13\x00\x03\x00\x00\x00\x011\xff\xff\xff\xff\x00\x00\x00\x00", False),
    ("backend", m.CommandComplete("SELECT 1"), b"C\x00\x00\x00\x0dSELECT 1\x00", False),
    ("backend", m.EmptyQueryResponse(), b"I\x00\x00\x00\x04", False),
    ("backend", m.ParameterDescription((23, 25)),
     b"t\x00\x00\x00\x0e\x00\x02\x00\x00\x00\x17\x00\x00\x00\x19", False),
    ("backend", m.NoData(), b"n\x00\x00\x00\x04", False),
    ("backend", m.PortalSuspended(), b"s\x00\x00\x00\x04", False),
    ("backend", m.ParseComplete(), b"1\x00\x00\x00\x04", False),
    ("backend", m.BindComplete(), b"2\x00\x00\x00\x04", False),
    ("backend", m.CloseComplete(), b"3\x00\x00\x00\x04", False),
    ("backend", m.ErrorResponse({"S": "ERROR", "V": "ERROR", "C": "42501",
                                 "M": "permission denied"}),
     b"E\x00\x00\x00\x2dSERROR\x00VERROR\x00C42501\x00Mpermission denied\x00\x00", False),
    ("backend", m.NoticeResponse({"S": "NOTICE", "M": "hi"}),
     b"N\x00\x00\x00\x11SNOTICE\x00Mhi\x00\x00", False),
    ("backend", m.NotificationResponse(99, "chan", "hello"),
     b"A\x00\x00\x00\x13\x00\x00\x00\x63chan\x00hello\x00", False),
    ("backend", m.NegotiateProtocolVersion(0, ("_pq_.foo",)),
     b"v\x00\x00\x00\x15\x00\x03\x00\x00\x00\x00\x00\x01_pq_.foo\x00", False),
    ("backend", m.CopyInResponse(0, (0, 0)), b"G\x00\x00\x00\x0b\x00\x00\x02\x00\x00\x00\x00",
     False),
    ("backend", m.CopyOutResponse(1, (1,)), b"H\x00\x00\x00\x09\x01\x00\x01\x00\x01", False),
    ("backend", m.CopyBothResponse(0, ()), b"W\x00\x00\x00\x07\x00\x00\x00", False),
    ("backend", m.CopyData(b"abc"), b"d\x00\x00\x00\x07abc", True),
    ("backend", m.CopyDone(), b"c\x00\x00\x00\x04", False),
    ("backend", m.FunctionCallResponse(b"\x00\x01"),
     b"V\x00\x00\x00\x0a\x00\x00\x00\x02\x00\x01", False),
    ("backend", m.FunctionCallResponse(None), b"V\x00\x00\x00\x08\xff\xff\xff\xff", False),
]
CASES = [pytest.param(*case, id=f"{case[0]}-{type(case[1]).__name__}-{i}")
         for i, case in enumerate(GOLDEN)]
GARBAGE = b"\xffZ\x00"  # shorter than any header, so it just stays buffered


def _next(buf: FrameBuffer, side: str) -> bytes | None:
    return buf.next_startup() if side == "startup" else buf.next_frame()


def _reframe(side: str, wire: bytes, payload: bytes) -> bytes:
    """``wire``'s header with a different payload and a length word to match."""
    if side == "startup":
        return (len(payload) + 8).to_bytes(4, "big") + wire[4:8] + payload
    return wire[:1] + (len(payload) + 4).to_bytes(4, "big") + payload


def _payload(side: str, wire: bytes) -> bytes:
    return wire[8:] if side == "startup" else wire[5:]


def test_every_message_class_has_a_golden_case() -> None:
    covered = {type(case[1]) for case in GOLDEN}
    assert covered == set(message_classes())


def message_classes() -> list[type]:
    return [cls for _, cls in inspect.getmembers(m, inspect.isclass)
            if dataclasses.is_dataclass(cls) and "raw" in {f.name for f in dataclasses.fields(cls)}]


@pytest.mark.parametrize(("side", "msg", "wire", "open_ended"), CASES)
def test_encode_golden(side: str, msg: Any, wire: bytes, open_ended: bool) -> None:
    assert encoder.encode(msg) == wire


@pytest.mark.parametrize(("side", "msg", "wire", "open_ended"), CASES)
def test_decode_golden(side: str, msg: Any, wire: bytes, open_ended: bool) -> None:
    decoded = DECODERS[side](wire)
    assert decoded == msg
    assert type(decoded) is type(msg)
    assert decoded.raw == wire


@pytest.mark.parametrize(("side", "msg", "wire", "open_ended"), CASES)
def test_decode_accepts_bytearray_and_memoryview(side: str, msg: Any, wire: bytes,
                                                 open_ended: bool) -> None:
    assert DECODERS[side](bytearray(wire)) == msg
    assert DECODERS[side](memoryview(wire)) == msg


@pytest.mark.parametrize(("side", "msg", "wire", "open_ended"), CASES)
def test_frame_buffer_whole(side: str, msg: Any, wire: bytes, open_ended: bool) -> None:
    buf = FrameBuffer()
    buf.feed(wire)
    assert _next(buf, side) == wire
    assert _next(buf, side) is None
    assert len(buf) == 0


@pytest.mark.parametrize(("side", "msg", "wire", "open_ended"), CASES)
def test_frame_buffer_byte_by_byte(side: str, msg: Any, wire: bytes, open_ended: bool) -> None:
    buf = FrameBuffer()
    for i in range(len(wire) - 1):
        buf.feed(wire[i:i + 1])
        assert _next(buf, side) is None
    buf.feed(wire[-1:])
    frame = _next(buf, side)
    assert frame == wire
    assert DECODERS[side](frame) == msg


@pytest.mark.parametrize(("side", "msg", "wire", "open_ended"), CASES)
def test_frame_buffer_trailing_garbage(side: str, msg: Any, wire: bytes, open_ended: bool) -> None:
    buf = FrameBuffer()
    buf.feed(wire + GARBAGE)
    assert _next(buf, side) == wire
    assert _next(buf, side) is None
    assert buf.take_all() == GARBAGE


@pytest.mark.parametrize(("side", "msg", "wire", "open_ended"), CASES)
def test_decode_rejects_trailing_bytes(side: str, msg: Any, wire: bytes, open_ended: bool) -> None:
    longer = _reframe(side, wire, _payload(side, wire) + b"\x00")
    if open_ended:
        assert DECODERS[side](longer) != msg
        return
    with pytest.raises(RemoteProtocolError):
        DECODERS[side](longer)


@pytest.mark.parametrize(("side", "msg", "wire", "open_ended"), CASES)
def test_decode_rejects_truncated_payload(side: str, msg: Any, wire: bytes,
                                          open_ended: bool) -> None:
    if open_ended:
        return
    payload = _payload(side, wire)
    for cut in range(len(payload)):
        with pytest.raises(RemoteProtocolError):
            DECODERS[side](_reframe(side, wire, payload[:cut]))


@pytest.mark.parametrize(("side", "msg", "wire", "open_ended"), CASES)
def test_decode_rejects_length_word_mismatch(side: str, msg: Any, wire: bytes,
                                             open_ended: bool) -> None:
    with pytest.raises(RemoteProtocolError, match="length"):
        DECODERS[side](wire + b"\x00")
    with pytest.raises(RemoteProtocolError, match="length|header"):
        DECODERS[side](wire[:-1])


def test_raw_is_not_compared_or_shown() -> None:
    a, b = m.Query("SELECT 1"), m.Query("SELECT 1", raw=b"Q\x00\x00\x00\rSELECT 1\x00")
    assert a == b
    assert "raw" not in repr(b)


@pytest.mark.parametrize("cls", message_classes())
def test_messages_are_frozen_and_slotted(cls: type) -> None:
    assert "__slots__" in vars(cls)
    assert dataclasses.fields(cls)[-1].name == "raw"
    msg: Any = next(case[1] for case in GOLDEN if type(case[1]) is cls)
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.raw = b"x"
    assert not hasattr(msg, "__dict__")


# --- type-byte constants


def _constants(namespace: type) -> dict[str, int]:
    return {k: v for k, v in vars(namespace).items() if k.isupper()}


@pytest.mark.parametrize("namespace", [m.FrontendType, m.BackendType])
def test_type_bytes_are_unique_within_a_direction(namespace: type) -> None:
    values = list(_constants(namespace).values())
    assert len(values) == len(set(values))


def test_type_bytes_match_the_wire() -> None:
    assert encoder.encode(m.Describe("S", ""))[0] == m.FrontendType.DESCRIBE
    assert encoder.encode(m.DataRow(()))[0] == m.BackendType.DATA_ROW
    assert m.FrontendType.DESCRIBE == m.BackendType.DATA_ROW == ord("D")
    frontend = {case[2][0] for case in GOLDEN if case[0] in ("frontend", "sasl", "sasl_initial")}
    backend = {case[2][0] for case in GOLDEN if case[0] == "backend"}
    assert frontend == set(_constants(m.FrontendType).values())
    assert backend == set(_constants(m.BackendType).values())


@pytest.mark.parametrize(("decode", "type_byte"), [
    (decoder.decode_frontend, "R"), (decoder.decode_frontend, "T"), (decoder.decode_frontend, "x"),
    (decoder.decode_backend, "Q"), (decoder.decode_backend, "P"), (decoder.decode_backend, "\x00"),
])
def test_unknown_type_byte(decode: Callable[[bytes], Any], type_byte: str) -> None:
    with pytest.raises(RemoteProtocolError, match="unknown"):
        decode(type_byte.encode() + b"\x00\x00\x00\x04")


@pytest.mark.parametrize("frame", [b"", b"Q", b"Q\x00\x00\x00"])
def test_frame_shorter_than_header(frame: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match="header"):
        decoder.decode_frontend(frame)


# --- startup packets


def _startup(code: int, payload: bytes = b"") -> bytes:
    return (len(payload) + 8).to_bytes(4, "big") + code.to_bytes(4, "big") + payload


@pytest.mark.parametrize(("major", "minor"), [(2, 0), (4, 0), (1234, 5681), (0, 0)])
def test_unsupported_protocol_version(major: int, minor: int) -> None:
    with pytest.raises(RemoteProtocolError, match="unsupported frontend protocol") as info:
        decoder.decode_startup(_startup(major << 16 | minor, b"user\x00u\x00\x00"))
    assert info.value.sqlstate == "0A000"


@pytest.mark.parametrize("minor", [0, 1, 2, 0xFFFF])
def test_any_minor_version_of_3_is_accepted(minor: int) -> None:
    msg = decoder.decode_startup(_startup(3 << 16 | minor, b"user\x00u\x00\x00"))
    assert isinstance(msg, m.StartupMessage)
    assert (msg.major, msg.minor) == (3, minor)
    assert msg.user == msg.database == "u"


@pytest.mark.parametrize(("payload", "problem"), [
    (b"", "NUL"),
    (b"user\x00u\x00", "NUL"),
    (b"user\x00u", "NUL"),
    (b"user\x00u\x00user\x00v\x00\x00", "duplicate"),
    (b"user\x00u\x00\x00\x00", "unexpected bytes"),
    (b"user\x00\xff\x00\x00", "UTF-?8"),
])
def test_malformed_startup_message(payload: bytes, problem: str) -> None:
    with pytest.raises(RemoteProtocolError, match=problem):
        decoder.decode_startup(_startup(m.PROTOCOL_3_0, payload))


@pytest.mark.parametrize("packet", [
    _startup(m.SSL_REQUEST_CODE, b"\x00"),
    _startup(m.GSSENC_REQUEST_CODE, b"\x00\x00\x00\x00"),
    _startup(m.CANCEL_REQUEST_CODE, b"\x00\x00\x00\x01\x01\x02\x03"),  # 3-byte key
    _startup(m.CANCEL_REQUEST_CODE, b"\x00\x00\x00\x01" + bytes(257)),
    _startup(m.CANCEL_REQUEST_CODE, b"\x00\x00"),
    b"\x00\x00\x00\x04\x00\x03",
    b"\x00\x00\x00\x09\x00\x03\x00\x00",  # length word says 9, packet is 8
    _startup(m.PROTOCOL_3_0, b"a\x00" * 5000 + b"\x00"),  # over MAX_STARTUP_PACKET
])
def test_malformed_startup_packets(packet: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decoder.decode_startup(packet)


# --- strictness of typed messages


def _frame(type_byte: bytes, payload: bytes) -> bytes:
    return type_byte + (len(payload) + 4).to_bytes(4, "big") + payload


@pytest.mark.parametrize(("decode", "frame", "problem"), [
    (decoder.decode_frontend, _frame(b"Q", b"SELECT \xff\x00"), "UTF-?8"),
    (decoder.decode_frontend, _frame(b"Q", b"SELECT 1"), "NUL"),
    (decoder.decode_frontend, _frame(b"Q", b"SELECT 1\x00\x00"), "unexpected bytes"),
    (decoder.decode_frontend, _frame(b"D", b"X\x00"), "kind"),
    (decoder.decode_frontend, _frame(b"C", b"s\x00"), "kind"),
    (decoder.decode_frontend, _frame(b"P", b"\x00q\x00\x00\x02\x00\x00\x00\x17"), "exceeds"),
    (decoder.decode_frontend,
     _frame(b"B", b"\x00\x00\x00\x02\x00\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00"),
     "2 format codes for 1 values"),
    (decoder.decode_frontend, _frame(b"B", b"\x00\x00\x00\x00\x00\x01\xff\xff\xff\xfe\x00\x00"),
     "invalid length -2"),
    (decoder.decode_frontend, _frame(b"B", b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x09ab\x00\x00"),
     "exceeds"),
    (decoder.decode_frontend, _frame(b"B", b"\x00\x00\x00\x00\xff\xff\x00\x00"), "exceeds"),
    (decoder.decode_frontend,
     _frame(b"F", b"\x00\x00\x00\x01\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00"),
     "2 format codes for 0 values"),
    (decoder.decode_backend, _frame(b"D", b"\x00\x01\xff\xff\xff\xfe"), "invalid length -2"),
    (decoder.decode_backend, _frame(b"D", b"\x00\x02\x00\x00\x00\x00"), "exceeds"),
    (decoder.decode_backend, _frame(b"D", b"\x80\x00"), "exceeds"),
    (decoder.decode_backend, _frame(b"Z", b"X"), "transaction status"),
    (decoder.decode_backend, _frame(b"R", b"\x00\x00\x00\x04"), "authentication code 4"),
    (decoder.decode_backend, _frame(b"R", b"\xff\xff\xff\xff"), "authentication code -1"),
    (decoder.decode_backend, _frame(b"R", b"\x00\x00\x00\x07x"), "carries no data"),
    (decoder.decode_backend, _frame(b"R", b"\x00\x00\x00\x05\x01\x02\x03"), "salt"),
    (decoder.decode_backend, _frame(b"R", b"\x00\x00\x00\x0aSCRAM-SHA-256\x00"), "NUL"),
    (decoder.decode_backend, _frame(b"E", b"SERROR\x00SERROR\x00\x00"), "duplicate"),
    (decoder.decode_backend, _frame(b"E", b"\xc3ERROR\x00\x00"), "not ASCII"),
    (decoder.decode_backend, _frame(b"E", b"SERROR\x00"), "field code"),
    (decoder.decode_backend, _frame(b"T", b"\x00\x02a\x00" + bytes(18)), "exceeds"),
    (decoder.decode_backend, _frame(b"K", b"\x00\x00\x00\x01\x01\x02"), "secret key"),
    (decoder.decode_backend, _frame(b"v", b"\x00\x02\x00\x00\x00\x00\x00\x00"), "not 3.x"),
    (decoder.decode_backend, _frame(b"v", b"\x00\x03\x00\x00\xff\xff\xff\xff"), "negative"),
    (decoder.decode_backend, _frame(b"v", b"\x00\x03\x00\x00\x00\x00\x00\x05a\x00"), "exceeds"),
    (decoder.decode_backend, _frame(b"V", b"\xff\xff\xff\xf0"), "invalid length"),
    (decoder.decode_backend, _frame(b"S", b"client_encoding\x00UTF8"), "NUL"),
    (decoder.decode_backend, _frame(b"A", b"\x00\x00\x00\x01ch\x00pay\x00\x00"), "unexpected"),
])
def test_malformed_typed_messages(decode: Callable[[bytes], Any], frame: bytes,
                                  problem: str) -> None:
    with pytest.raises(RemoteProtocolError, match=problem) as info:
        decode(frame)
    assert info.value.sqlstate == "08P01"


def test_invalid_utf8_is_chained() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decoder.decode_backend(_frame(b"C", b"\xffINSERT\x00"))
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


def test_int16_counts_are_unsigned_like_postgresql() -> None:
    # 65535 NULL parameters is a legal (if large) Bind; a signed read would call it -1.
    params = (None,) * 65535
    msg = m.Bind("", "", (), params, ())
    assert decoder.decode_frontend(encoder.encode(msg)) == msg


# --- 'p' frames


def test_as_password() -> None:
    msg = decoder.decode_frontend(b"p\x00\x00\x00\x0bsecret\x00")
    assert isinstance(msg, m.PasswordMessage)
    assert decoder.as_password(msg) == "secret"
    assert decoder.as_password(m.PasswordMessage(b"md5abc\x00")) == "md5abc"


@pytest.mark.parametrize(("data", "problem"), [
    (b"secret", "NUL"), (b"sec\x00ret\x00", "unexpected bytes"), (b"\xff\x00", "UTF-?8"),
])
def test_as_password_rejects(data: bytes, problem: str) -> None:
    with pytest.raises(RemoteProtocolError, match=problem):
        decoder.as_password(m.PasswordMessage(data))


@pytest.mark.parametrize(("data", "problem"), [
    (b"SCRAM-SHA-256", "NUL"),
    (b"\x00\xff\xff\xff\xff", "empty mechanism"),
    (b"SCRAM-SHA-256\x00\x00\x00", "length"),
    (b"SCRAM-SHA-256\x00\xff\xff\xff\xfe", "invalid length -2"),
    (b"SCRAM-SHA-256\x00\x00\x00\x00\x05abc", "exceeds"),
    (b"SCRAM-SHA-256\x00\x00\x00\x00\x01abc", "unexpected bytes"),
])
def test_as_sasl_initial_response_rejects(data: bytes, problem: str) -> None:
    with pytest.raises(RemoteProtocolError, match=problem):
        decoder.as_sasl_initial_response(m.PasswordMessage(data))


def test_sasl_reinterpretation_keeps_the_raw_frame() -> None:
    frame = b"p\x00\x00\x00\x21SCRAM-SHA-256\x00\x00\x00\x00\x0bn,,n=,r=abc"
    msg = decoder.decode_frontend(frame)
    assert isinstance(msg, m.PasswordMessage)
    assert decoder.as_sasl_initial_response(msg).raw == frame
    assert decoder.as_sasl_response(msg).raw == frame


# --- errors and notices


def test_error_response_builder() -> None:
    msg = m.error_response("42501", "permission denied", detail="table t", hint="ask")
    assert isinstance(msg, m.ErrorResponse)
    assert encoder.encode(msg) == (
        b"E\x00\x00\x00\x3bSERROR\x00VERROR\x00C42501\x00Mpermission denied\x00"
        b"Dtable t\x00Hask\x00\x00"
    )
    assert (msg.severity, msg.sqlstate, msg.message) == ("ERROR", "42501", "permission denied")
    assert (msg.detail, msg.hint) == ("table t", "ask")


def test_notice_builder() -> None:
    msg = m.error_response("01000", "careful", severity="WARNING", notice=True)
    assert isinstance(msg, m.NoticeResponse)
    assert msg.fields == {"S": "WARNING", "V": "WARNING", "C": "01000", "M": "careful"}
    assert msg.detail is None and msg.hint is None
    assert m.error_response("00000", "hi", notice=True).severity == "NOTICE"
    assert m.error_response("08P01", "bye", severity="FATAL").severity == "FATAL"


def test_severity_prefers_the_non_localised_field() -> None:
    msg = m.ErrorResponse({"S": "FEHLER", "V": "ERROR", "C": "42P01", "M": "x"})
    assert msg.severity == "ERROR"
    assert m.ErrorResponse({"S": "FEHLER"}).severity == "FEHLER"
    assert m.ErrorResponse({}).sqlstate == m.ErrorResponse({}).message == ""


@pytest.mark.parametrize("kwargs", [
    {"sqlstate": "4250", "message": "x"},
    {"sqlstate": "42501 ", "message": "x"},
    {"sqlstate": "42501", "message": "x", "severity": "NOTICE"},
    {"sqlstate": "42501", "message": "x", "severity": "ERROR", "notice": True},
])
def test_error_response_builder_rejects(kwargs: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        m.error_response(**kwargs)


# --- encode refuses what cannot go on the wire


@pytest.mark.parametrize("msg", [
    m.Query("SELECT\x001"),
    m.Query(123),  # type: ignore[arg-type]
    m.Execute("", 2**31),
    m.Execute("", "10"),  # type: ignore[arg-type]
    m.Parse("", "q", (2**32,)),
    m.Parse("", "q", (-1,)),
    m.Parse("", "q", (0,) * 65536),
    m.Bind("", "", (0, 1), (b"",), ()),
    m.Bind("", "", (), ("text",), ()),  # type: ignore[arg-type]
    m.Bind("", "", (), (), (2**15,)),
    m.Describe("X", ""),
    m.Close("", ""),
    m.CopyData("text"),  # type: ignore[arg-type]
    m.CopyData(5),  # type: ignore[arg-type]
    m.FunctionCall(1, (0, 0), (None,), 0),
    m.SASLInitialResponse("", None),
    m.CancelRequest(1, b"abc"),
    m.CancelRequest(2**31, b"abcd"),
    m.StartupMessage(2 << 16, {"user": "u"}),
    m.StartupMessage(m.PROTOCOL_3_0, {"": "x"}),
    m.StartupMessage(m.PROTOCOL_3_0, {"user": "x" * 10_000}),
    m.StartupMessage(m.PROTOCOL_3_0, {"user": "\udc80"}),
    m.AuthenticationMD5Password(b"123"),
    m.AuthenticationSASL(("",)),
    m.AuthenticationOther(m.AuthCode.OK),
    m.AuthenticationOther(m.AuthCode.SSPI, b"x"),
    m.ReadyForQuery("X"),
    m.RowDescription((m.FieldDescription("a", type_size=40000),)),
    m.ErrorResponse({"SS": "x"}),
    m.ErrorResponse({"\x00": "x"}),
    m.NoticeResponse({"é": "x"}),
    m.NegotiateProtocolVersion(70000),
    m.CopyInResponse(128, ()),
    m.BackendKeyData(1, b"\x00" * 257),
])
def test_encode_rejects(msg: Any) -> None:
    with pytest.raises(LocalProtocolError):
        encoder.encode(msg)


def test_encode_rejects_non_messages() -> None:
    with pytest.raises(LocalProtocolError, match="not a PostgreSQL message"):
        encoder.encode(object())  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        encoder.encode(m.FieldDescription("a"))  # type: ignore[arg-type]


def test_encode_ignores_raw() -> None:
    assert encoder.encode(m.Sync(raw=b"junk")) == b"S\x00\x00\x00\x04"


def test_protocol_errors_form_a_tree() -> None:
    assert issubclass(RemoteProtocolError, ProtocolError)
    assert issubclass(LocalProtocolError, ProtocolError)
