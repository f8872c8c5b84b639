"""Password preparation exactly as PostgreSQL does it before SCRAM key derivation.

PostgreSQL's pg_saslprep: pure ASCII passes unchanged; anything else goes through
SASLprep (RFC 4013) and, when SASLprep rejects it, the raw UTF-8 is used instead.
Both sides must hash the same bytes, so this follows PostgreSQL, not the letter of
the RFC (prohibition checks run on the mapped, not the normalised, string).
Used by ``scram.py``.
"""

from __future__ import annotations

import stringprep
import unicodedata


def prepare_password(password: str) -> bytes:
    """Return the bytes PostgreSQL feeds to PBKDF2 for ``password``.

    Like pg_saslprep: pure ASCII is used as is (even control characters); anything else goes
    through SASLprep (RFC 4013), and when SASLprep rejects it the raw UTF-8 is used instead.
    """
    if password.isascii():
        return password.encode("ascii")
    prepared = _pg_saslprep(password)
    return (password if prepared is None else prepared).encode("utf-8")


def _pg_saslprep(text: str) -> str | None:
    """SASLprep ``text``, or None where PostgreSQL's pg_saslprep reports it prohibited."""
    mapped = "".join(_map_char(c) for c in text)
    if not mapped:
        return None  # PostgreSQL refuses a password that maps to nothing
    # PostgreSQL runs the prohibition and bidi checks on the mapped, not the normalised,
    # string; we do the same so that both sides hash the same bytes.
    if any(_prohibited(c) for c in mapped) or not _bidi_ok(mapped):
        return None
    return unicodedata.normalize("NFKC", mapped)


def _map_char(c: str) -> str:
    if stringprep.in_table_c12(c):
        return " "
    if stringprep.in_table_b1(c):
        return ""
    return c


def _prohibited(c: str) -> bool:
    return (
        stringprep.in_table_a1(c)
        or stringprep.in_table_c12(c)
        or stringprep.in_table_c21_c22(c)
        or stringprep.in_table_c3(c)
        or stringprep.in_table_c4(c)
        or stringprep.in_table_c5(c)
        or stringprep.in_table_c6(c)
        or stringprep.in_table_c7(c)
        or stringprep.in_table_c8(c)
        or stringprep.in_table_c9(c)
    )


def _bidi_ok(text: str) -> bool:
    """RFC 3454 section 6: a string with RandALCat must start and end with one, and have no L."""
    if not any(stringprep.in_table_d1(c) for c in text):
        return True
    if any(stringprep.in_table_d2(c) for c in text):
        return False
    return stringprep.in_table_d1(text[0]) and stringprep.in_table_d1(text[-1])
