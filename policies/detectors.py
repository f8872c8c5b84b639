"""Content detectors: identifiers hidden in free text, found with plain regexes and checksums.

The masking wing runs a :class:`Detector` over every text value of a masked session's results
(the second line behind column provenance). Each candidate a regex finds is confirmed by the
identifier's own rules — the SSA's SSN validity rules, NANP numbering, the Luhn checksum — and
replaced by ``[<kind>]``. A few microseconds per value: one combined prefilter, then per-kind
regexes only on values that can hold a match. Pure; no models, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

_SSN = re.compile(r"(?<![\d-])(\d{3})[- ](\d{2})[- ](\d{4})(?![\d-])")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_PHONE = re.compile(r"(?<![\d-])(?:\+?1[-. ]?)?\(?([2-9]\d{2})\)?[-. ]?([2-9]\d{2})[-. ]?(\d{4})"
                    r"(?![\d-])")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_DIGIT_OR_AT = re.compile(r"\d|@")  # every detector needs a digit or an @: skip other values


def valid_ssn(area: str, group: str, serial: str) -> bool:
    """The SSA never issues area 000, 666 or 900-999, group 00 or serial 0000."""
    a = int(area)
    return a != 0 and a != 666 and a < 900 and group != "00" and serial != "0000"


def valid_nanp(area: str, exchange: str) -> bool:
    """NANP: area and exchange start 2-9 (the regex) and are not N11 service codes."""
    return area[1:] != "11" and exchange[1:] != "11"


def luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _ssn(match: re.Match[str]) -> bool:
    return valid_ssn(match[1], match[2], match[3])


def _phone(match: re.Match[str]) -> bool:
    return valid_nanp(match[1], match[2])


def _card(match: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", match[0])
    return 13 <= len(digits) <= 19 and luhn(digits)


def _always(match: re.Match[str]) -> bool:
    return True


Check = Callable[[re.Match[str]], bool]


class Detector:
    """Finds and replaces the identifiers of the configured kinds in one string."""

    __slots__ = ("_checks", "kinds")

    def __init__(self, kinds: Iterable[str], mrn_pattern: str | None = None) -> None:
        self.kinds = frozenset(kinds)
        table: list[tuple[str, re.Pattern[str], Check]] = [
            ("credit_card", _CARD, _card),  # before phone/ssn: a card number holds both shapes
            ("ssn", _SSN, _ssn),
            ("phone", _PHONE, _phone),
            ("email", _EMAIL, _always),
        ]
        if mrn_pattern is not None:
            table.append(("mrn", re.compile(mrn_pattern), _always))
        self._checks = tuple(entry for entry in table if entry[0] in self.kinds)

    def scrub(self, text: str) -> tuple[str, tuple[str, ...]]:
        """``text`` with each confirmed identifier replaced, and the kinds that were found."""
        if "mrn" not in self.kinds and not _DIGIT_OR_AT.search(text):
            return text, ()
        found: list[str] = []
        for kind, pattern, check in self._checks:
            text, hits = _replace(pattern, check, kind, text)
            if hits:
                found.append(kind)
        return text, tuple(found)


def _replace(pattern: re.Pattern[str], check: Check, kind: str, text: str) -> tuple[str, int]:
    hits = 0

    def swap(match: re.Match[str]) -> str:
        nonlocal hits
        if not check(match):
            return match[0]
        hits += 1
        return f"[{kind}]"

    return pattern.sub(swap, text), hits
