"""One wire value in, its masked wire value out, by strategy, type OID and format.

Masked values keep their column's type, so drivers decode them as before: text types get
``****``, hashes and partial strings; ``year`` keeps a date's year (January 1st); integer and
numeric hashes are integers; other types (and strategies a type cannot carry) become NULL.
Binary values are decoded for text, varchar, bpchar, name, json, jsonb, date, timestamp(tz),
int2/4/8 and numeric; a strategy that needs the value of another binary type raises
:class:`UnmaskableValue` (the relay refuses the result). Driven by ``gateway/masking/rows.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import struct
from decimal import Decimal

from policies.masking import Strategy

from ..errors import GatewayError

TEXT_TYPES = frozenset({19, 25, 705, 1042, 1043})  # name, text, unknown, bpchar, varchar
JSON, JSONB = 114, 3802
DATE, TIMESTAMP, TIMESTAMPTZ = 1082, 1114, 1184
INTS = {21: (2, "!h"), 23: (4, "!i"), 20: (8, "!q")}
NUMERIC = 1700
STRINGS = TEXT_TYPES | {JSON, JSONB}  # values the content detectors read
REDACTED = "****"
_EPOCH = dt.date(2000, 1, 1)  # PostgreSQL's binary date/time epoch
_ISO_YEAR = re.compile(r"^(\d{4})-\d{2}-\d{2}")


class UnmaskableValue(GatewayError):
    sqlstate = "0A000"  # feature_not_supported


def mask_value(value: bytes, type_oid: int, binary: bool, strategy: Strategy,
               key: bytes) -> bytes | None:
    """The masked form of a non-NULL wire value (None: send NULL)."""
    if type_oid in TEXT_TYPES or type_oid in (JSON, JSONB):
        text = _text(value, type_oid, binary)
        masked = mask_text(text, strategy, key)
        return None if masked is None else _encode_text(masked, type_oid, binary)
    if strategy.kind == "redact" or strategy.kind == "partial":
        return None
    if strategy.kind == "hash" and (type_oid in INTS or type_oid == NUMERIC):
        return _hash_number(value, type_oid, binary, key)
    if strategy.kind == "year" and type_oid in (DATE, TIMESTAMP, TIMESTAMPTZ):
        return _year(value, type_oid, binary)
    if binary:
        raise UnmaskableValue(f"phigate: cannot mask a binary value of type oid {type_oid} "
                              f"with {strategy}", hint="request this column in text format")
    return None


def redact_value(type_oid: int, binary: bool) -> bytes | None:
    """A derived column redacted whole: ``****`` for text types, NULL otherwise."""
    if type_oid in TEXT_TYPES or type_oid in (JSON, JSONB):
        return _encode_text(REDACTED, type_oid, binary)
    return None


def digest(text: str, key: bytes) -> str:
    """Keyed, stable: equal values hash equally (joins, GROUP BY), unkeyed guessing fails."""
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def partial(text: str, first: int, last: int) -> str:
    """Keep the first/last N letters and digits; the rest become ``*``, punctuation stays."""
    positions = [i for i, c in enumerate(text) if c.isalnum()]
    keep = set(positions[:first]) | set(positions[len(positions) - last:] if last else ())
    return "".join(c if i in keep or not c.isalnum() else "*" for i, c in enumerate(text))


def mask_text(text: str, strategy: Strategy, key: bytes) -> str | None:
    """A value already read as text (COPY rows, text columns) masked by ``strategy``."""
    if strategy.kind == "redact":
        return REDACTED
    if strategy.kind == "hash":
        return digest(text, key)
    if strategy.kind == "partial":
        return partial(text, strategy.first, strategy.last)
    match = _ISO_YEAR.match(text)  # year of a date held in a text column
    return f"{match[1]}-01-01" if match else REDACTED


def _text(value: bytes, type_oid: int, binary: bool) -> str:
    if binary and type_oid == JSONB:
        value = value[1:]  # jsonb binary: a version byte, then the text
    text = value.decode("utf-8", "replace")
    if type_oid in (JSON, JSONB):  # mask the JSON's content, not its quoting
        try:
            parsed = json.loads(text)
        except ValueError:
            return text
        return parsed if isinstance(parsed, str) else json.dumps(parsed, sort_keys=True)
    return text


def _encode_text(text: str, type_oid: int, binary: bool) -> bytes:
    if type_oid in (JSON, JSONB):
        data = json.dumps(text).encode("utf-8")
        return b"\x01" + data if binary and type_oid == JSONB else data
    return text.encode("utf-8")


def _hash_number(value: bytes, type_oid: int, binary: bool, key: bytes) -> bytes:
    if binary:
        canonical = _number_text(value, type_oid)
    else:
        text = value.decode("ascii").strip()
        canonical = text if type_oid in INTS else _canonical(Decimal(text))
    size, fmt = INTS.get(type_oid, (4, "!i"))
    number = int(digest(canonical, key), 16) % (2 ** (8 * size - 1))
    if not binary:
        return str(number).encode("ascii")
    if type_oid in INTS:
        return struct.pack(fmt, number)
    return _numeric_binary(number)


def _number_text(value: bytes, type_oid: int) -> str:
    if type_oid in INTS:
        return str(struct.unpack(INTS[type_oid][1], value)[0])
    ndigits, weight, sign, _ = struct.unpack("!hhHh", value[:8])
    if sign == 0xC000:
        return "NaN"
    digits = struct.unpack(f"!{ndigits}h", value[8:8 + 2 * ndigits])
    number = sum((Decimal(d).scaleb(4 * (weight - i)) for i, d in enumerate(digits)),
                 Decimal(0))
    return _canonical(-number if sign == 0x4000 else number)


def _canonical(number: Decimal) -> str:
    """One text per numeric value, whatever its scale or wire format: 1.50 and 1.5 agree."""
    return format(number.normalize(), "f") if number.is_finite() else str(number)


def _numeric_binary(number: int) -> bytes:
    groups = []
    while number:
        number, rest = divmod(number, 10000)
        groups.append(rest)
    groups.reverse()
    return struct.pack(f"!hhHh{len(groups)}h", len(groups), len(groups) - 1, 0, 0, *groups)


def _year(value: bytes, type_oid: int, binary: bool) -> bytes | None:
    if not binary:
        match = _ISO_YEAR.match(value.decode("ascii", "replace"))
        if not match:
            return None  # another DateStyle: no year we can read safely
        rest = {DATE: "", TIMESTAMP: " 00:00:00", TIMESTAMPTZ: " 00:00:00+00"}[type_oid]
        return f"{match[1]}-01-01{rest}".encode("ascii")
    if type_oid == DATE:
        (days,) = struct.unpack("!i", value)
        if abs(days) > 2_000_000:  # infinity and far dates: no year worth keeping
            return None
        year = (_EPOCH + dt.timedelta(days=days)).year
        return struct.pack("!i", (dt.date(year, 1, 1) - _EPOCH).days)
    (micros,) = struct.unpack("!q", value)
    try:
        year = (dt.datetime(2000, 1, 1) + dt.timedelta(microseconds=micros)).year
    except OverflowError:
        return None
    start = dt.datetime(year, 1, 1) - dt.datetime(2000, 1, 1)
    return struct.pack("!q", start // dt.timedelta(microseconds=1))
