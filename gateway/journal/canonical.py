"""Canonical encoding of one journal line, and the journal's timestamp format.

A line is a JSON object with sorted keys, no spaces, UTF-8, ending in a
newline, so ``jq`` and ``grep`` work on segment files. The writer is the only
caller that encodes; readers and the verifier hash the bytes as stored and
never re-serialise.
"""

from __future__ import annotations

import json
import json.encoder
import time

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


def encode_line(entry: dict[str, object]) -> bytes:
    """Encode ``entry`` as one canonical line, including its newline.

    Raises TypeError or ValueError for values JSON cannot represent (bytes,
    NaN, datetimes, cycles): the caller's bug, reported before a seq is spent.
    """
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
