"""Hypothesis properties of the codec.

- decode(encode(msg)) == msg, for every message class, with ``raw`` the encoded frame;
- any frame decode accepts re-encodes to exactly the same bytes (the encoding is canonical,
  so forwarding ``raw`` and re-encoding can never disagree);
- random or mutated bytes raise only ProtocolError subclasses, never IndexError & co.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from protocols.postgres import decoder, encoder, peek
from protocols.postgres import messages as m
from protocols.postgres.encodings import EncodingRefused
from protocols.postgres.errors import ProtocolError
from protocols.postgres.framing import FrameBuffer

from .test_codec import message_classes

SETTINGS = settings(max_examples=200, deadline=None)

text = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=12)
name = st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=12)
int16 = st.integers(-(2**15), 2**15 - 1)
int32 = st.integers(-(2**31), 2**31 - 1)
uint32 = st.integers(0, 2**32 - 1)
blob = st.binary(max_size=24)
value = st.none() | blob
values = st.lists(value, max_size=6).map(tuple)
formats = st.lists(int16, max_size=4).map(tuple)
oids = st.lists(uint32, max_size=4).map(tuple)
key = st.binary(min_size=m.MIN_CANCEL_KEY, max_size=m.MAX_CANCEL_KEY)
kind = st.sampled_from("SP")


@st.composite
def with_formats(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[bytes | None, ...]]:
    """Values plus a legal format list for them: none, one for all, or one each."""
    vals = draw(values)
    n = draw(st.sampled_from(sorted({0, 1, len(vals)})))
    return tuple(draw(st.lists(int16, min_size=n, max_size=n))), vals


def _bind(portal: str, statement: str, fv: Any, result: tuple[int, ...]) -> m.Bind:
    return m.Bind(portal, statement, fv[0], fv[1], result)


def _function_call(oid: int, fv: Any, result: int) -> m.FunctionCall:
    return m.FunctionCall(oid, fv[0], fv[1], result)


field_description = st.builds(m.FieldDescription, text, uint32, int16, uint32, int16, int32, int16)
error_fields = st.dictionaries(st.characters(min_codepoint=1, max_codepoint=127), text,
                               max_size=6)

STARTUP: dict[type, st.SearchStrategy[Any]] = {
    m.StartupMessage: st.builds(m.StartupMessage, st.integers(0, 0xFFFF).map(lambda n: 3 << 16 | n),
                                st.dictionaries(name, text, max_size=5)),
    m.SSLRequest: st.builds(m.SSLRequest),
    m.GSSENCRequest: st.builds(m.GSSENCRequest),
    m.CancelRequest: st.builds(m.CancelRequest, int32, key),
}
FRONTEND: dict[type, st.SearchStrategy[Any]] = {
    m.Query: st.builds(m.Query, text),
    m.Parse: st.builds(m.Parse, text, text, oids),
    m.Bind: st.builds(_bind, text, text, with_formats(), formats),
    m.Describe: st.builds(m.Describe, kind, text),
    m.Execute: st.builds(m.Execute, text, int32),
    m.Sync: st.builds(m.Sync),
    m.Flush: st.builds(m.Flush),
    m.Close: st.builds(m.Close, kind, text),
    m.CopyData: st.builds(m.CopyData, blob),
    m.CopyDone: st.builds(m.CopyDone),
    m.CopyFail: st.builds(m.CopyFail, text),
    m.FunctionCall: st.builds(_function_call, uint32, with_formats(), int16),
    m.Terminate: st.builds(m.Terminate),
    m.PasswordMessage: st.builds(m.PasswordMessage, blob),
}
SASL: dict[type, st.SearchStrategy[Any]] = {
    m.SASLInitialResponse: st.builds(m.SASLInitialResponse, name, value),
    m.SASLResponse: st.builds(m.SASLResponse, blob),
}
BACKEND: dict[type, st.SearchStrategy[Any]] = {
    m.AuthenticationOk: st.builds(m.AuthenticationOk),
    m.AuthenticationCleartextPassword: st.builds(m.AuthenticationCleartextPassword),
    m.AuthenticationMD5Password: st.builds(m.AuthenticationMD5Password,
                                           st.binary(min_size=4, max_size=4)),
    m.AuthenticationSASL: st.builds(m.AuthenticationSASL, st.lists(name, max_size=3).map(tuple)),
    m.AuthenticationSASLContinue: st.builds(m.AuthenticationSASLContinue, blob),
    m.AuthenticationSASLFinal: st.builds(m.AuthenticationSASLFinal, blob),
    m.AuthenticationOther: (
        st.builds(m.AuthenticationOther, st.sampled_from(sorted(m.OTHER_AUTH_CODES
                                                                - {m.AuthCode.GSS_CONTINUE})))
        | st.builds(m.AuthenticationOther, st.just(m.AuthCode.GSS_CONTINUE), blob)
    ),
    m.ParameterStatus: st.builds(m.ParameterStatus, text, text),
    m.BackendKeyData: st.builds(m.BackendKeyData, int32, key),
    m.ReadyForQuery: st.builds(m.ReadyForQuery, st.sampled_from("ITE")),
    m.RowDescription: st.builds(m.RowDescription,
                                st.lists(field_description, max_size=4).map(tuple)),
    m.DataRow: st.builds(m.DataRow, values),
    m.CommandComplete: st.builds(m.CommandComplete, text),
    m.EmptyQueryResponse: st.builds(m.EmptyQueryResponse),
    m.ParameterDescription: st.builds(m.ParameterDescription, oids),
    m.NoData: st.builds(m.NoData),
    m.PortalSuspended: st.builds(m.PortalSuspended),
    m.ParseComplete: st.builds(m.ParseComplete),
    m.BindComplete: st.builds(m.BindComplete),
    m.CloseComplete: st.builds(m.CloseComplete),
    m.ErrorResponse: st.builds(m.ErrorResponse, error_fields),
    m.NoticeResponse: st.builds(m.NoticeResponse, error_fields),
    m.NotificationResponse: st.builds(m.NotificationResponse, int32, text, text),
    m.NegotiateProtocolVersion: st.builds(m.NegotiateProtocolVersion, st.integers(0, 0xFFFF),
                                          st.lists(text, max_size=3).map(tuple)),
    m.CopyInResponse: st.builds(m.CopyInResponse, st.integers(-128, 127), formats),
    m.CopyOutResponse: st.builds(m.CopyOutResponse, st.integers(-128, 127), formats),
    m.CopyBothResponse: st.builds(m.CopyBothResponse, st.integers(-128, 127), formats),
    m.FunctionCallResponse: st.builds(m.FunctionCallResponse, value),
}


def test_every_message_class_has_a_strategy() -> None:
    covered = set(STARTUP) | set(FRONTEND) | set(SASL) | set(BACKEND)
    assert covered == set(message_classes())


def _check_roundtrip(decode: Callable[[bytes], Any], msg: Any) -> None:
    wire = encoder.encode(msg)
    decoded = decode(wire)
    assert decoded == msg
    assert type(decoded) is type(msg)
    assert decoded.raw == wire
    assert encoder.encode(decoded) == wire


@SETTINGS
@given(st.one_of(*STARTUP.values()))
def test_startup_roundtrip(msg: Any) -> None:
    _check_roundtrip(decoder.decode_startup, msg)


@SETTINGS
@given(st.one_of(*FRONTEND.values()))
@example(m.Bind("", "", (1,), (), ()))  # one format code and no params is legal
def test_frontend_roundtrip(msg: Any) -> None:
    _check_roundtrip(decoder.decode_frontend, msg)


@SETTINGS
@given(st.one_of(*BACKEND.values()))
def test_backend_roundtrip(msg: Any) -> None:
    _check_roundtrip(decoder.decode_backend, msg)


@SETTINGS
@given(SASL[m.SASLInitialResponse])
def test_sasl_initial_response_roundtrip(msg: m.SASLInitialResponse) -> None:
    def decode(frame: bytes) -> Any:
        password = decoder.decode_frontend(frame)
        assert isinstance(password, m.PasswordMessage)
        return decoder.as_sasl_initial_response(password)

    _check_roundtrip(decode, msg)


@SETTINGS
@given(SASL[m.SASLResponse])
def test_sasl_response_roundtrip(msg: m.SASLResponse) -> None:
    def decode(frame: bytes) -> Any:
        password = decoder.decode_frontend(frame)
        assert isinstance(password, m.PasswordMessage)
        return decoder.as_sasl_response(password)

    _check_roundtrip(decode, msg)


@SETTINGS
@given(text)
def test_password_roundtrip(password: str) -> None:
    msg = m.PasswordMessage(password.encode() + b"\0")
    assert decoder.as_password(decoder.decode_frontend(encoder.encode(msg))) == password  # type: ignore[arg-type]


# --- hostile input

DECODE: dict[str, Callable[[bytes], Any]] = {
    "frontend": decoder.decode_frontend,
    "backend": decoder.decode_backend,
    "startup": decoder.decode_startup,
}


def _decode_or_protocol_error(decode: Callable[[bytes], Any], data: bytes) -> Any:
    """Decode, or None when it raised a ProtocolError; any other exception fails the test."""
    try:
        msg = decode(data)
    except ProtocolError:
        return None
    # Strict decoding means the encoding is canonical: what was accepted re-encodes verbatim.
    assert encoder.encode(msg) == data
    assert msg.raw == data
    return msg


@SETTINGS
@pytest.mark.parametrize("side", DECODE)
@given(data=st.binary(max_size=64))
@example(data=b"")
@example(data=b"R\x00\x00\x00\x08")
@example(data=b"\x00\x00\x00\x08\x00\x03\x00\x00")
def test_random_bytes(side: str, data: bytes) -> None:
    _decode_or_protocol_error(DECODE[side], data)


def _frontend_frame(type_byte: int, payload: bytes) -> bytes:
    return bytes((type_byte,)) + (len(payload) + 4).to_bytes(4, "big") + payload


def _startup_packet(code: int, payload: bytes) -> bytes:
    return (len(payload) + 8).to_bytes(4, "big") + code.to_bytes(4, "big") + payload


def _type_bytes(namespace: type) -> list[int]:
    return sorted({v for k, v in vars(namespace).items() if k.isupper()})


startup_codes = st.sampled_from([m.PROTOCOL_3_0, m.PROTOCOL_3_0 | 2, m.SSL_REQUEST_CODE,
                                 m.GSSENC_REQUEST_CODE, m.CANCEL_REQUEST_CODE]) | uint32


@SETTINGS
@given(st.sampled_from(_type_bytes(m.FrontendType)), st.binary(max_size=48))
@example(ord("B"), b"\x00\x00\x00\x01\x00\x00\x00\x00")
@example(ord("F"), b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")
def test_well_framed_random_frontend_payload(type_byte: int, payload: bytes) -> None:
    _decode_or_protocol_error(decoder.decode_frontend, _frontend_frame(type_byte, payload))


@SETTINGS
@given(st.sampled_from(_type_bytes(m.BackendType)), st.binary(max_size=48))
@example(ord("R"), b"\x00\x00\x00\x0a\x00")
@example(ord("E"), b"\x00")
def test_well_framed_random_backend_payload(type_byte: int, payload: bytes) -> None:
    _decode_or_protocol_error(decoder.decode_backend, _frontend_frame(type_byte, payload))


@SETTINGS
@given(startup_codes, st.binary(max_size=48))
def test_well_framed_random_startup_payload(code: int, payload: bytes) -> None:
    _decode_or_protocol_error(decoder.decode_startup, _startup_packet(code, payload))


def _mutate(data: st.DataObject, wire: bytes) -> bytes:
    """Flip one byte after the header, keeping the length word right."""
    start = 8 if wire[:1] == b"\x00" else 5
    if len(wire) <= start:
        return wire
    i = data.draw(st.integers(start, len(wire) - 1))
    return wire[:i] + bytes((data.draw(st.integers(0, 255)),)) + wire[i + 1:]


@SETTINGS
@given(st.one_of(*FRONTEND.values(), *SASL.values()), st.data())
def test_mutated_frontend_frames(msg: Any, data: st.DataObject) -> None:
    _decode_or_protocol_error(decoder.decode_frontend, _mutate(data, encoder.encode(msg)))


@SETTINGS
@given(st.one_of(*BACKEND.values()), st.data())
def test_mutated_backend_frames(msg: Any, data: st.DataObject) -> None:
    _decode_or_protocol_error(decoder.decode_backend, _mutate(data, encoder.encode(msg)))


@SETTINGS
@given(st.one_of(*STARTUP.values()), st.data())
def test_mutated_startup_packets(msg: Any, data: st.DataObject) -> None:
    _decode_or_protocol_error(decoder.decode_startup, _mutate(data, encoder.encode(msg)))


@SETTINGS
@given(st.lists(st.one_of(*BACKEND.values()), max_size=6), st.data())
def test_stream_through_frame_buffer(msgs: list[Any], data: st.DataObject) -> None:
    frames = [encoder.encode(msg) for msg in msgs]
    stream = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    buf, decoded = FrameBuffer(), []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        buf.feed(stream[a:b])
        while (frame := buf.next_frame()) is not None:
            decoded.append(decoder.decode_backend(frame))
    assert decoded == msgs
    assert [msg.raw for msg in decoded] == frames


@SETTINGS
@given(st.lists(st.binary(max_size=32), max_size=6))
def test_random_bytes_through_frame_buffer_and_decoder(chunks: list[bytes]) -> None:
    buf = FrameBuffer(max_message_size=4096)
    try:
        for chunk in chunks:
            buf.feed(chunk)
            while (frame := buf.next_frame()) is not None:
                _decode_or_protocol_error(decoder.decode_frontend, frame)
                _decode_or_protocol_error(decoder.decode_backend, frame)
    except ProtocolError:
        pass


@SETTINGS
@given(SASL[m.SASLInitialResponse], st.data())
def test_mutated_sasl_initial_responses(msg: m.SASLInitialResponse, data: st.DataObject) -> None:
    frame = _mutate(data, encoder.encode(msg))
    password = decoder.decode_frontend(frame)
    assert isinstance(password, m.PasswordMessage)
    try:
        decoded = decoder.as_sasl_initial_response(password)
    except ProtocolError:
        return
    assert encoder.encode(decoded) == frame


# -- peek.bind_parameters: the journal's fast read of a Bind's values ------------------------

binds = st.builds(_bind, text, text, with_formats(), formats)


@SETTINGS
@given(binds)
def test_bind_parameters_reads_what_the_codec_reads(bind: m.Bind) -> None:
    frame = encoder.encode(bind)
    assert peek.bind_parameters(frame) == decoder.decode_frontend(frame).params


@SETTINGS
@given(binds, st.data())
def test_bind_parameters_refuses_what_the_codec_refuses(bind: m.Bind, data: st.DataObject
                                                        ) -> None:
    """A cut, lengthened or overwritten frame: both read the same values, or both refuse it
    (with a ProtocolError, never IndexError & co). The names' text is not read: the relay
    reads it first (``bind_names``), and refuses the frame there."""
    frame = bytearray(encoder.encode(bind))
    edit = data.draw(st.sampled_from(("cut", "append", "overwrite")))
    if edit == "cut":
        del frame[data.draw(st.integers(5, len(frame) - 1)):]
    elif edit == "append":
        frame += data.draw(st.binary(min_size=1, max_size=6))
    else:
        at = data.draw(st.integers(5, len(frame) - 1))
        frame[at:at + 2] = data.draw(st.binary(min_size=1, max_size=2))
    frame[1:5] = len(frame[1:]).to_bytes(4, "big")  # framing already checked the length word
    raw = bytes(frame)
    try:
        expected = decoder.decode_frontend(raw).params
    except ProtocolError:
        try:
            peek.bind_names(raw)
        except (ProtocolError, EncodingRefused):
            return
        with pytest.raises(ProtocolError):
            peek.bind_parameters(raw)
        return
    assert peek.bind_parameters(raw) == expected
