"""Column values as psql would print them, from their wire bytes, type OID and format.

Text-format values (psql's own) are shown as sent. Binary-format values
(what asyncpg and other drivers ask for) are decoded for the common built-in
types and shown in PostgreSQL's text form; anything else is shown as ``\\x``
hex so nothing is hidden. Driven by ``events`` when a recording is decoded;
nothing here runs in the gateway.
"""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from collections.abc import Callable
from decimal import Decimal

# Type OIDs (pg_type.dat); psql right-aligns the numeric ones.
BOOL, BYTEA, CHAR, NAME, INT8, INT2, INT4, TEXT, OID = 16, 17, 18, 19, 20, 21, 23, 25, 26
JSON, FLOAT4, FLOAT8, MONEY, BPCHAR, VARCHAR, DATE = 114, 700, 701, 790, 1042, 1043, 1082
TIME, TIMESTAMP, TIMESTAMPTZ, NUMERIC, UUID, JSONB, XID, CID = 1083, 1114, 1184, 1700, 2950, \
    3802, 28, 29
NUMERIC_TYPES = frozenset({INT2, INT4, INT8, OID, FLOAT4, FLOAT8, NUMERIC, MONEY, XID, CID})
_PG_EPOCH = dt.datetime(2000, 1, 1)
_PG_EPOCH_DATE = dt.date(2000, 1, 1)


def is_numeric(type_oid: int) -> bool:
    return type_oid in NUMERIC_TYPES


def render(value: bytes | None, type_oid: int, fmt: int) -> str | None:
    """The value as text; None for SQL NULL."""
    if value is None:
        return None
    if fmt == 0:
        return value.decode("utf-8", "replace")
    decoder = _BINARY.get(type_oid)
    if decoder is not None and _SIZES.get(type_oid, len(value)) == len(value):
        try:
            return decoder(value)
        except (struct.error, ValueError, OverflowError, IndexError):
            pass  # not what the type says: show the bytes instead
    return hex_bytes(value)


def hex_bytes(value: bytes) -> str:
    return "\\x" + value.hex()


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _int(value: bytes) -> str:
    return str(int.from_bytes(value, "big", signed=True))


def _float(value: bytes) -> str:
    wide = len(value) == 8
    number = struct.unpack(">d" if wide else ">f", value)[0]
    if number != number:
        return "NaN"
    if number in (float("inf"), float("-inf")):
        return "Infinity" if number > 0 else "-Infinity"
    if wide:
        text = repr(number)
    else:  # the shortest text that reads back as the same float4, as PostgreSQL prints it
        text = next(t for p in range(1, 10)
                    if struct.pack(">f", float(t := f"{number:.{p}g}")) == value)
    return text[:-2] if text.endswith(".0") else text


def _numeric(value: bytes) -> str:
    ndigits, weight, sign, dscale = struct.unpack_from(">hhHH", value)
    if sign == 0xC000:
        return "NaN"
    if sign in (0xD000, 0xF000):
        return "Infinity" if sign == 0xD000 else "-Infinity"
    digits = struct.unpack_from(f">{ndigits}H", value, 8)
    number = Decimal(0)
    for i, digit in enumerate(digits):
        number += Decimal(digit) * (Decimal(10000) ** (weight - i))
    text = f"{number:.{dscale}f}"
    return "-" + text if sign == 0x4000 else text


def _timestamp(value: bytes) -> str:
    micros = struct.unpack(">q", value)[0]
    return _format_datetime(_PG_EPOCH + dt.timedelta(microseconds=micros))


def _timestamptz(value: bytes) -> str:
    return _timestamp(value) + "+00"  # binary timestamptz is UTC; the session zone is unknown


def _format_datetime(moment: dt.datetime) -> str:
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text


def _date(value: bytes) -> str:
    days = struct.unpack(">i", value)[0]
    return (_PG_EPOCH_DATE + dt.timedelta(days=days)).isoformat()


def _time(value: bytes) -> str:
    micros = struct.unpack(">q", value)[0]
    seconds, micro = divmod(micros, 1_000_000)
    text = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return text + (f".{micro:06d}".rstrip("0") if micro else "")


def _jsonb(value: bytes) -> str:
    return value[1:].decode("utf-8", "replace")  # version byte, then the JSON text


# Fixed-size types: a value of another size is not what the type says (shown as bytes).
_SIZES = {BOOL: 1, INT2: 2, INT4: 4, INT8: 8, OID: 4, XID: 4, CID: 4, FLOAT4: 4, FLOAT8: 8,
          DATE: 4, TIME: 8, TIMESTAMP: 8, TIMESTAMPTZ: 8, UUID: 16}
_BINARY: dict[int, Callable[[bytes], str]] = {
    BOOL: lambda v: "t" if v[0] else "f",
    INT2: _int, INT4: _int, INT8: _int, OID: lambda v: str(int.from_bytes(v, "big")),
    XID: lambda v: str(int.from_bytes(v, "big")), CID: lambda v: str(int.from_bytes(v, "big")),
    FLOAT4: _float, FLOAT8: _float, NUMERIC: _numeric,
    TEXT: _text, VARCHAR: _text, BPCHAR: _text, NAME: _text, CHAR: _text, JSON: _text,
    JSONB: _jsonb, BYTEA: hex_bytes, UUID: lambda v: str(uuid.UUID(bytes=v)),
    DATE: _date, TIME: _time, TIMESTAMP: _timestamp, TIMESTAMPTZ: _timestamptz,
}
