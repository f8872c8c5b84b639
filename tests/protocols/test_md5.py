"""MD5 password responses; expected values computed independently with ``openssl md5``."""

from __future__ import annotations

import pytest

from protocols.postgres.md5 import md5_password


def test_known_vector() -> None:
    # openssl: md5("penciluser") = 20c46e37…; md5("20c46e37…" + 01 02 03 04) = 4376eb69…
    assert md5_password("user", "pencil", b"\x01\x02\x03\x04") == (
        "md54376eb6913b38f9aaff38dc7cf19ca76"
    )


def test_non_ascii_user_and_password_are_utf8() -> None:
    assert md5_password("jürgen", "pässwörd", b"abcd") == "md50e8e545868d19f1b6317bb1e97ec4c04"


def test_salt_changes_response() -> None:
    assert md5_password("u", "p", b"abcd") != md5_password("u", "p", b"abce")


@pytest.mark.parametrize("salt", [b"", b"abc", b"abcde"])
def test_salt_must_be_four_bytes(salt: bytes) -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        md5_password("user", "pencil", salt)
