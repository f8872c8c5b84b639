"""Rewriting the DataRows of one result: the relay's :class:`RowTransformer` for masking.

:func:`plan_result` turns a RowDescription and the result formats into a per-column plan
(strategy, redact-whole for derived columns, content detection, or as it is) and refuses a
derived column under ``on_derived: deny``; :class:`RowMasker` then rewrites each DataRow
frame. Only columns with a plan are decoded; the rest are copied as bytes. Driven by
``gateway/masking/filter.py``.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from policies.detectors import Detector
from policies.masking import Strategy
from protocols.postgres import messages as m

from ..errors import PolicyDenied
from .values import mask_value, redact_value

_I16, _I32 = struct.Struct("!h"), struct.Struct("!i")

DETECT = "detect"
WHOLE = "redact-derived"
ColumnPlan = Strategy | str | None  # a strategy, DETECT, WHOLE, or None: as it is


@dataclass(slots=True)
class Column:
    index: int
    name: str
    type_oid: int
    binary: bool
    plan: ColumnPlan


class RowMasker:
    """Rewrites DataRow frames column by column; ``report`` says what it did."""

    __slots__ = ("_columns", "_detector", "_key", "_found", "_masked", "rules")

    def __init__(self, columns: list[Column], detector: Detector | None, key: bytes,
                 rules: Sequence[str]) -> None:
        self._columns = {c.index: c for c in columns if c.plan is not None}
        self._detector = detector
        self._key = key
        self._found: Counter[str] = Counter()
        self._masked = {c.name: str(c.plan) for c in columns
                        if c.plan is not None and c.plan != DETECT}
        self.rules = tuple(rules)

    def transform(self, frame: bytes) -> bytes:
        view = memoryview(frame)
        (count,) = _I16.unpack_from(view, 5)
        parts: list[bytes] = [_I16.pack(count)]
        offset = 7
        for index in range(count):
            (size,) = _I32.unpack_from(view, offset)
            offset += 4
            if size < 0:
                parts.append(_I32.pack(-1))
                continue
            value = view[offset:offset + size]
            offset += size
            column = self._columns.get(index)
            if column is None:
                parts.append(_I32.pack(size))
                parts.append(bytes(value))
                continue
            masked = self._value(column, bytes(value))
            if masked is None:
                parts.append(_I32.pack(-1))
            else:
                parts.append(_I32.pack(len(masked)))
                parts.append(masked)
        body = b"".join(parts)
        return b"D" + _I32.pack(len(body) + 4) + body

    def _value(self, column: Column, value: bytes) -> bytes | None:
        plan = column.plan
        if isinstance(plan, Strategy):
            return mask_value(value, column.type_oid, column.binary, plan, self._key)
        if plan == WHOLE:
            return redact_value(column.type_oid, column.binary)
        assert self._detector is not None  # DETECT is planned only with a detector
        prefix = b"\x01" if column.binary and column.type_oid == 3802 else b""
        text = value[len(prefix):].decode("utf-8", "replace")
        scrubbed, kinds = self._detector.scrub(text)
        if not kinds:
            return value
        self._found.update(kinds)
        return prefix + scrubbed.encode("utf-8")

    def report(self) -> dict[str, object]:
        out: dict[str, object] = {"rules": list(self.rules)}
        if self._masked:
            out["masked"] = dict(self._masked)
        if self._found:
            out["detected"] = dict(self._found)
        return out


def result_columns(description: m.RowDescription, formats: Sequence[int] | None
                   ) -> list[tuple[int, m.FieldDescription, bool]]:
    """(index, field, binary) per column; Bind formats: none = text, one = all, else each."""
    fields = description.fields
    if formats is None:
        codes = [f.format for f in fields]
    elif not formats:
        codes = [0] * len(fields)
    elif len(formats) == 1:
        codes = [formats[0]] * len(fields)
    else:
        codes = list(formats) + [0] * (len(fields) - len(formats))
    return [(i, f, codes[i] == 1) for i, f in enumerate(fields)]


def derived_refusal(name: str) -> PolicyDenied:
    return PolicyDenied(
        f"phigate: result column {name!r} is computed from masked columns and cannot be "
        "shown masked; refused (masking rule on_derived: deny)",
        hint="select the masked columns themselves, or compute without them")


def unlisted_refusal(name: str) -> PolicyDenied:
    return PolicyDenied(
        f"phigate: result column {name!r} comes from a relation or column the masking catalog "
        "does not list yet (made since it was read, or not committed); refused",
        hint="try again: the catalog is read again for the next statement (after COMMIT)")
