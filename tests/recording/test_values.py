"""Binary result values shown as PostgreSQL prints them in text."""

from __future__ import annotations

import struct
import uuid

import pytest

from gateway.recording import values as v


@pytest.mark.parametrize(("oid", "wire", "text"), [
    (v.BOOL, b"\x01", "t"),
    (v.INT2, struct.pack(">h", -5), "-5"),
    (v.INT4, struct.pack(">i", 123456), "123456"),
    (v.INT8, struct.pack(">q", -(2**40)), str(-(2**40))),
    (v.FLOAT8, struct.pack(">d", 1.5), "1.5"),
    (v.FLOAT8, struct.pack(">d", 100.0), "100"),
    (v.FLOAT4, struct.pack(">f", 1.1), "1.1"),
    (v.FLOAT8, struct.pack(">d", float("nan")), "NaN"),
    # numeric 12345.678: 3 digits (1, 2345, 6780), weight 1, positive, dscale 3
    (v.NUMERIC, struct.pack(">hhHH3H", 3, 1, 0, 3, 1, 2345, 6780), "12345.678"),
    (v.NUMERIC, struct.pack(">hhHH1H", 1, 0, 0x4000, 0, 7), "-7"),
    (v.NUMERIC, struct.pack(">hhHH", 0, 0, 0xC000, 0), "NaN"),
    (v.TEXT, "Zoë".encode(), "Zoë"),
    (v.BYTEA, b"\x00\xff", "\\x00ff"),
    (v.DATE, struct.pack(">i", 366), "2001-01-01"),
    (v.TIMESTAMP, struct.pack(">q", 1_500_000), "2000-01-01 00:00:01.5"),
    (v.TIMESTAMPTZ, struct.pack(">q", 0), "2000-01-01 00:00:00+00"),
    (v.TIME, struct.pack(">q", 3_723_000_000), "01:02:03"),
    (v.UUID, uuid.UUID(int=1).bytes, str(uuid.UUID(int=1))),
    (v.JSONB, b'\x01{"a": 1}', '{"a": 1}'),
    (999999, b"\x01\x02", "\\x0102"),  # unknown type: the bytes
    (v.INT4, b"\x01", "\\x01"),  # not what the type says: the bytes, never an exception
])
def test_binary(oid: int, wire: bytes, text: str) -> None:
    assert v.render(wire, oid, 1) == text


def test_text_and_null() -> None:
    assert v.render(b"42", v.INT4, 0) == "42"
    assert v.render(None, v.INT4, 1) is None
    assert v.is_numeric(v.NUMERIC) and not v.is_numeric(v.TEXT)
