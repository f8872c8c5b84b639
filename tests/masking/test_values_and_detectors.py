"""Masking one value (text and binary by type OID) and the content detectors."""

from __future__ import annotations

import datetime as dt
import struct

import pytest

from gateway.masking.values import UnmaskableValue, mask_value, redact_value
from policies.detectors import Detector, luhn, valid_nanp, valid_ssn
from policies.masking import Strategy

KEY = b"k" * 32
PARTIAL = Strategy("partial", last=4)


def test_text_strategies() -> None:
    assert mask_value(b"123-45-6789", 25, False, PARTIAL, KEY) == b"***-**-6789"
    assert mask_value(b"Ann", 1043, True, Strategy("redact"), KEY) == b"****"
    first = mask_value(b"a@example.org", 25, False, Strategy("hash"), KEY)
    assert first == mask_value(b"a@example.org", 25, True, Strategy("hash"), KEY)
    assert first != mask_value(b"a@example.org", 25, False, Strategy("hash"), b"x" * 32)
    assert mask_value(b"1987-06-05", 1082, False, Strategy("year"), KEY) == b"1987-01-01"


def test_binary_dates_ints_numeric_and_json_keep_their_type() -> None:
    days = (dt.date(1987, 6, 5) - dt.date(2000, 1, 1)).days
    out = mask_value(struct.pack("!i", days), 1082, True, Strategy("year"), KEY)
    assert out is not None
    assert dt.date(2000, 1, 1) + dt.timedelta(days=struct.unpack("!i", out)[0]) == \
        dt.date(1987, 1, 1)
    text_hash = mask_value(b"42", 23, False, Strategy("hash"), KEY)
    binary_hash = mask_value(struct.pack("!i", 42), 23, True, Strategy("hash"), KEY)
    assert binary_hash is not None and text_hash is not None
    assert struct.unpack("!i", binary_hash)[0] == int(text_hash)
    numeric_12_5 = struct.pack("!hhHhhh", 2, 0, 0, 1, 12, 5000)
    assert mask_value(numeric_12_5, 1700, True, Strategy("hash"), KEY) is not None
    assert mask_value(b"12.50", 1700, False, Strategy("hash"), KEY) == \
        mask_value(b"12.5", 1700, False, Strategy("hash"), KEY)
    assert mask_value(b'"x@y.org"', 114, False, Strategy("redact"), KEY) == b'"****"'
    assert mask_value(b'\x01"abc"', 3802, True, Strategy("redact"), KEY) == b'\x01"****"'
    assert mask_value(b"7", 23, False, Strategy("redact"), KEY) is None  # NULL, type-valid
    assert redact_value(25, True) == b"****" and redact_value(23, True) is None


def test_unknown_binary_types_are_refused() -> None:
    with pytest.raises(UnmaskableValue, match="type oid 2950"):
        mask_value(b"\x00" * 16, 2950, True, Strategy("hash"), KEY)


def test_validity_rules() -> None:
    assert valid_ssn("219", "09", "9999")
    assert not valid_ssn("000", "12", "3456") and not valid_ssn("666", "12", "3456")
    assert not valid_ssn("900", "12", "3456") and not valid_ssn("123", "00", "4567")
    assert not valid_ssn("123", "45", "0000")
    assert valid_nanp("212", "555") and not valid_nanp("911", "555")
    assert luhn("4111111111111111") and not luhn("4111111111111112")


@pytest.mark.parametrize(("text", "expected", "kinds"), [
    ("SSN 219-09-9999 on file", "SSN [ssn] on file", ("ssn",)),
    ("not an SSN: 900-12-3456", "not an SSN: 900-12-3456", ()),
    ("call (212) 555-0142 now", "call [phone] now", ("phone",)),
    ("mail ann.lee+x@mail.example.org", "mail [email]", ("email",)),
    ("card 4111-1111-1111-1111", "card [credit_card]", ("credit_card",)),
    ("order 4111-1111-1111-1112", "order 4111-1111-1111-1112", ()),
    ("chart MRN:00123456 seen", "chart [mrn] seen", ("mrn",)),
    ("nothing to see", "nothing to see", ()),
])
def test_detectors(text: str, expected: str, kinds: tuple[str, ...]) -> None:
    detector = Detector({"ssn", "phone", "email", "credit_card", "mrn"},
                        r"\bMRN[-:# ]?\d{6,10}\b")
    assert detector.scrub(text) == (expected, kinds)
