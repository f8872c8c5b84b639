"""A bounded LRU cache of classifications, keyed on the SQL text.

Parsing costs tens of microseconds; a dictionary hit costs well under one. The key must keep
every constant a decision depends on — a LIMIT value, the setting name in ``set_config('role',
...)``, a function's string argument, a prepared statement's name — and a libpg_query fingerprint
drops constants (and some names), so ``set_config('search_path', ...)`` and ``set_config('role',
...)`` share a fingerprint. So the fingerprint alone is never the key.

Two levels: the exact text (always right), then a *shape* key for the common case of queries
that differ only in a number compared in a predicate (``WHERE id = 42`` vs ``WHERE id = 7``):
the text in which exactly those numbers (a numeric literal directly after ``=``, ``<`` or
``>``) are replaced by ``?``. Two texts with the same shape differ only in those literals, so
their parse trees differ only in constant values. Everything else stays verbatim: identifiers
and numbers anywhere else (a LIMIT or FETCH count can never directly follow a comparison
operator). Texts with strings, quoted identifiers, comments or backslashes are never shaped,
so a reason, a role name or ``LIMIT /**/ 10`` keep their exact key. Numbers compared in a
predicate never change a statement's class, tables, functions, danger or export shape, so a
shape hit classifies alike. A shape hit's ``sql`` and statement ``text`` are those of the
first query with that shape: callers that need this query's own text (the gateway cutting
``SET phigate.reason`` out of a string) must classify it exactly.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from policies.classify import classify
from policies.statement import Classification

_K = TypeVar("_K")

DEFAULT_CAPACITY = 10_000  # entries; a few KB each, so tens of MB at worst
MAX_CACHED_TEXT = 64 * 1024  # longer texts are classified every time rather than pinned
_OPAQUE = re.compile(r"['\"$\\]|--|/\*")
# A plain decimal number directly after a comparison operator (whitespace only between); the
# group is the operator and the whitespace, which stay. The match starts at the operator, so
# the scan skips to the next ``=``, ``<`` or ``>`` (a look-behind is tried at every position:
# twice as slow, and this runs for every simple-protocol statement).
_COMPARED_NUMBER = re.compile(r"([=<>]\s*)[+-]?\d+(?:\.\d+)?(?![\w.$])")


def shape_key(sql: str) -> str | None:
    """The text with compared numbers masked; None when not applicable or nothing to mask.

    Not applicable to text with quotes, dollar quotes, comments or backslashes, where a
    "number after =" might sit inside a string (a reason, a role name) or a comment.
    """
    if _OPAQUE.search(sql):
        return None
    # split() alternates text and the kept group; joining them with "?" after each group
    # costs less than subn's template, which Python 3.11 expands in Python for every match.
    parts = _COMPARED_NUMBER.split(sql)
    if len(parts) == 1:
        return None
    parts[1::2] = [kept + "?" for kept in parts[1::2]]
    return "".join(parts)


class ClassificationCache:
    """``get(sql)`` returns the classification of ``sql``, classifying on a miss."""

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        *,
        classifier: Callable[[str], Classification] = classify,
    ) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity = capacity
        self._classify = classifier
        self._entries: OrderedDict[str, Classification] = OrderedDict()
        self._shapes: OrderedDict[str, Classification] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, sql: str) -> Classification:
        found = self._entries.get(sql)
        if found is not None:
            self._entries.move_to_end(sql)
            self.hits += 1
            return found
        cacheable = self.capacity and len(sql) <= MAX_CACHED_TEXT
        shape = shape_key(sql) if cacheable else None
        if shape is not None and (found := self._shapes.get(shape)) is not None:
            self._shapes.move_to_end(shape)
            self.hits += 1
            return found
        self.misses += 1
        result = self._classify(sql)
        if cacheable:
            _remember(self._entries, sql, result, self.capacity)
            if shape is not None:
                _remember(self._shapes, shape, result, self.capacity)
        return result

    def clear(self) -> None:
        self._entries.clear()
        self._shapes.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, sql: object) -> bool:
        return sql in self._entries


def _remember(entries: OrderedDict[_K, Classification], key: _K, value: Classification,
              capacity: int) -> None:
    entries[key] = value
    if len(entries) > capacity:
        entries.popitem(last=False)
