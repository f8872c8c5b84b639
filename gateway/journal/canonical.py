"""Canonical encoding of one journal line, and the journal's timestamp format.

A line is a JSON object with sorted keys, no spaces, UTF-8, ending in a
newline, so ``jq`` and ``grep`` work on segment files. The writer is the only
caller that encodes; readers and the verifier hash the bytes as stored and
never re-serialise.

:func:`encode_line_pure` (the standard library's C encoder) defines the
canonical bytes. :func:`encode_line` produces the same bytes with orjson, eight
times faster, where orjson is installed and agrees; where it would differ (floats
below 1e-4, which the standard library writes as ``1e-05``) or cannot encode
(integers beyond 64 bits, lone surrogates, non-string keys) the pure encoder
writes the line. tests/journal/test_canonical.py checks the two agree.
"""

from __future__ import annotations

import json
import json.encoder
import re
import time
from types import ModuleType

_orjson: ModuleType | None
try:
    import orjson as _orjson
except ImportError:  # optional: the pure encoder writes the same bytes, slower
    _orjson = None

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            allow_nan=False)
# Fallback for text that cannot be UTF-8 encoded (lone surrogates, e.g. from a
# client's undecodable bytes): \u escapes keep the line valid JSON and lossless.
_ASCII_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                                  allow_nan=False)


def _unencodable(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


# The C encoder built once: JSONEncoder.encode builds one per call, a third of the
# cost of a line. No circular-reference check (markers=None): entries are trees.
_C_ENCODER = (json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None, _unencodable, json.encoder.encode_basestring, None, ":", ",", True, False, False)
    if json.encoder.c_make_encoder is not None else None)  # type: ignore[attr-defined]


def _refuse(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


# Hand datetimes and dataclasses to ``_refuse`` rather than encode them, as json would.
_OR_OPTIONS = (_orjson.OPT_SORT_KEYS | _orjson.OPT_APPEND_NEWLINE | _orjson.OPT_PASSTHROUGH_DATETIME
               | _orjson.OPT_PASSTHROUGH_DATACLASS) if _orjson is not None else 0
# Where orjson's float text differs from repr's: a small float written as a decimal
# (0.00001) or with a one-digit exponent (1e-6). A false alarm (the same bytes inside a
# string) only costs the slower encoder.
_SMALL_FLOAT = re.compile(rb"0\.0000|\de-\d[^\d]")


def encode_line(entry: dict[str, object]) -> bytes:
    """Encode ``entry`` as one canonical line, including its newline.

    Raises TypeError or ValueError for values JSON cannot represent (bytes,
    datetimes, cycles): the caller's bug, reported before a seq is spent. NaN and
    infinities, which the pure encoder refuses, orjson writes as ``null``; no entry
    the gateway builds holds one.
    """
    if _orjson is not None:
        try:
            line: bytes = _orjson.dumps(entry, default=_refuse, option=_OR_OPTIONS)
        except TypeError:  # orjson.JSONEncodeError: let the reference encoder decide
            pass
        else:
            if b"0.0000" not in line and b"e-" not in line:
                return line
            if _SMALL_FLOAT.search(line) is None:
                return line
    return encode_line_pure(entry)


def encode_line_pure(entry: dict[str, object]) -> bytes:
    """The reference encoding of :func:`encode_line`, with the standard library only."""
    try:
        text = "".join(_C_ENCODER(entry, 0)) if _C_ENCODER is not None else _ENCODER.encode(entry)
    except RecursionError as e:
        raise ValueError("entry nests too deeply (or refers to itself)") from e
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        return _ASCII_ENCODER.encode(entry).encode("ascii") + b"\n"


def encode_compact(value: object) -> str:
    """Canonical JSON text for a value embedded in something else (CSV cells, files)."""
    return _ENCODER.encode(value)


class TimeFormatter:
    """RFC 3339 UTC timestamps with microseconds: ``2026-11-30T10:15:38.123456Z``.

    Caches the formatted whole second, because the writer stamps thousands of
    entries a second and ``strftime`` is the slow part.
    """

    __slots__ = ("_second", "_prefix")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, epoch_ns: int) -> str:
        second, ns = divmod(epoch_ns, 1_000_000_000)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{ns // 1000:06d}Z"


def format_time(epoch_ns: int) -> str:
    """One-off RFC 3339 formatting (see :class:`TimeFormatter`)."""
    return TimeFormatter()(epoch_ns)
