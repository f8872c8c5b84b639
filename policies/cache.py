"""A bounded LRU cache of classifications, keyed on the exact SQL text.

Parsing costs tens of microseconds; a dictionary hit costs well under one. The key must keep
every constant a decision depends on — a LIMIT value, the setting name in ``set_config('role',
...)``, a function's string argument, a prepared statement's name — and a libpg_query fingerprint
drops constants (and some names), so ``set_config('search_path', ...)`` and ``set_config('role',
...)`` share a fingerprint. The exact text keeps everything, and classification depends on the
text alone, so a hit is always the right answer. Statements that differ only in constants miss;
drivers that use parameters ($1) hit.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from policies.classify import classify
from policies.statement import Classification

DEFAULT_CAPACITY = 10_000  # entries; a few KB each, so tens of MB at worst
MAX_CACHED_TEXT = 64 * 1024  # longer texts are classified every time rather than pinned


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
        self.hits = 0
        self.misses = 0

    def get(self, sql: str) -> Classification:
        found = self._entries.get(sql)
        if found is not None:
            self._entries.move_to_end(sql)
            self.hits += 1
            return found
        self.misses += 1
        result = self._classify(sql)
        if self.capacity and len(sql) <= MAX_CACHED_TEXT:
            self._entries[sql] = result
            if len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return result

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, sql: object) -> bool:
        return sql in self._entries
