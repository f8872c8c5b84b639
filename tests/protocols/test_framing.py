"""Frame splitting: boundaries, size limits refused early, and arbitrary chunking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.postgres.errors import RemoteProtocolError
from protocols.postgres.framing import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MAX_STARTUP_PACKET,
    FrameBuffer,
    scan,
)

SYNC = b"S\x00\x00\x00\x04"
QUERY = b"Q\x00\x00\x00\rSELECT 1\x00"
SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"


def _frame(type_byte: bytes, payload: bytes) -> bytes:
    return type_byte + (len(payload) + 4).to_bytes(4, "big") + payload


def test_scan_finds_every_complete_frame() -> None:
    buf = QUERY + SYNC + QUERY[:7]
    spans, end = scan(buf)
    assert spans == [(ord("Q"), 0, len(QUERY)), (ord("S"), len(QUERY), len(QUERY) + len(SYNC))]
    assert end == len(QUERY) + len(SYNC)
    assert scan(bytearray(buf), start=end) == ([], end)


def test_scan_from_an_offset() -> None:
    spans, end = scan(b"xx" + SYNC, start=2)
    assert spans == [(ord("S"), 2, 7)]
    assert end == 7


def test_scan_with_only_part_of_a_header() -> None:
    assert scan(b"Q\x00\x00") == ([], 0)


def test_scan_refuses_oversized_frame_from_its_header_alone() -> None:
    header = b"D" + (DEFAULT_MAX_MESSAGE_SIZE + 1).to_bytes(4, "big")
    with pytest.raises(RemoteProtocolError, match="over the limit") as info:
        scan(SYNC + header)
    assert info.value.sqlstate == "54000"


@pytest.mark.parametrize("length", [0, 3])
def test_scan_refuses_length_below_four(length: int) -> None:
    with pytest.raises(RemoteProtocolError, match="invalid message length") as info:
        scan(b"Q" + length.to_bytes(4, "big"))
    assert info.value.sqlstate == "08P01"


def test_frame_buffer_refuses_oversized_frame_before_the_body() -> None:
    buf = FrameBuffer(max_message_size=100)
    buf.feed(_frame(b"d", bytes(96)))  # length word 100: exactly at the limit
    assert buf.next_frame() is not None
    buf.feed(b"d\x00\x00\x00\x65")  # 101, and not one byte of body yet
    with pytest.raises(RemoteProtocolError, match="over the limit") as info:
        buf.next_frame()
    assert info.value.sqlstate == "54000"


def test_frame_buffer_refuses_huge_length_word_with_default_limit() -> None:
    buf = FrameBuffer()
    buf.feed(b"Q\x7f\xff\xff\xff")
    with pytest.raises(RemoteProtocolError):
        buf.next_frame()


def test_frame_buffer_refuses_length_below_four() -> None:
    buf = FrameBuffer()
    buf.feed(b"Q\x00\x00\x00\x03")
    with pytest.raises(RemoteProtocolError, match="invalid message length"):
        buf.next_frame()


def test_startup_packet_over_the_limit_is_refused_from_its_length_word() -> None:
    buf = FrameBuffer()
    buf.feed((MAX_STARTUP_PACKET + 1).to_bytes(4, "big"))
    with pytest.raises(RemoteProtocolError, match="startup packet length"):
        buf.next_startup()


def test_startup_packet_at_the_limit_is_accepted() -> None:
    packet = MAX_STARTUP_PACKET.to_bytes(4, "big") + bytes(MAX_STARTUP_PACKET - 4)
    buf = FrameBuffer()
    buf.feed(packet[:-1])
    assert buf.next_startup() is None
    buf.feed(packet[-1:])
    assert buf.next_startup() == packet


@pytest.mark.parametrize("length", [0, 4, 7])
def test_startup_packet_too_short_is_refused(length: int) -> None:
    buf = FrameBuffer()
    buf.feed(length.to_bytes(4, "big"))
    with pytest.raises(RemoteProtocolError):
        buf.next_startup()


def test_ssl_request_then_typed_frames() -> None:
    buf = FrameBuffer()
    buf.feed(SSL_REQUEST + QUERY + SYNC)
    assert buf.next_startup() == SSL_REQUEST
    assert buf.next_frame() == QUERY
    assert buf.next_frame() == SYNC
    assert buf.next_frame() is None
    assert len(buf) == 0


def test_take_all_empties_the_buffer() -> None:
    buf = FrameBuffer()
    buf.feed(QUERY[:3])
    assert buf.take_all() == QUERY[:3]
    assert len(buf) == 0


# --- properties

frames = st.lists(
    st.builds(_frame, st.binary(min_size=1, max_size=1), st.binary(max_size=40)),
    max_size=8,
)


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=10)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@settings(max_examples=200, deadline=None)
@given(frames, st.data())
def test_any_chunking_yields_the_same_frames(expected: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(expected)
    buf, got = FrameBuffer(), []
    for chunk in data.draw(chunked(stream)):
        buf.feed(chunk)
        while (frame := buf.next_frame()) is not None:
            got.append(frame)
    assert got == expected
    spans, end = scan(stream)
    assert [stream[a:b] for _, a, b in spans] == expected
    assert end == len(stream)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=6), st.booleans())
def test_random_bytes_raise_only_protocol_errors(chunks: list[bytes], startup: bool) -> None:
    buf = FrameBuffer(max_message_size=1024)
    try:
        for chunk in chunks:
            buf.feed(chunk)
            while (buf.next_startup() if startup else buf.next_frame()) is not None:
                pass
        scan(b"".join(chunks), max_message_size=1024)
    except RemoteProtocolError:
        pass
