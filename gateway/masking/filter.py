"""The masking wing's :class:`~gateway.proxy.hooks.ResultFilter` for one statement.

Given each result's RowDescription (and formats), it plans every column: a column with a
source (table OID, attnum) gets what :class:`~gateway.masking.columns.ColumnMap` says; a
column whose source the catalog does not list (made since it was read) refuses the statement
and has the catalog read again for the next one; a column without one, in a statement that
reads masked relations, is checked with the taint analysis of the statement's output
expressions and is DERIVED when tainted or unsure. DERIVED
columns are refused (``on_derived: deny``) or redacted whole; text values of other columns go
through the content detectors when the profile has any. COPY TO results are planned by
``gateway/masking/copy.py``. Built by ``gateway/masking/hook.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from policies.detectors import Detector
from policies.taint import TAINTED, Output, output_taint
from protocols.postgres import messages as m
from protocols.postgres.decoder import decode_backend

from ..errors import PolicyDenied
from ..proxy.hooks import RowTransformer
from .columns import DERIVED, ColumnMap, Plan
from .copy import CopyMasker, CopyPlan
from .rows import (
    DETECT,
    WHOLE,
    Column,
    ColumnPlan,
    RowMasker,
    derived_refusal,
    result_columns,
    unlisted_refusal,
)
from .values import STRINGS

NO_DESCRIPTION = PolicyDenied(
    "phigate: this session's results are masked, and the gateway did not see this "
    "statement's row description; refused",
    hint="let the driver Describe the statement (the default for psql, psycopg, asyncpg)")


class MaskingFilter:
    """Plans each result of one statement of a masked session."""

    __slots__ = ("_map", "_sql", "_names", "_detector", "_key", "_copy", "_outputs",
                 "_unlisted")

    def __init__(self, column_map: ColumnMap, sql: str, *, masked_names: frozenset[str],
                 detector: Detector | None, key: bytes, copy: CopyPlan | None,
                 unlisted: Callable[[tuple[int, int]], None]) -> None:
        self._map, self._sql, self._names = column_map, sql, masked_names
        self._detector, self._key, self._copy = detector, key, copy
        self._unlisted = unlisted  # a source the catalog does not list was seen
        self._outputs: tuple[Output, ...] | None | bool = False  # False: not computed yet

    def rows(self, description: bytes | None, formats: Sequence[int] | None
             ) -> RowTransformer | None:
        if description is None:
            raise NO_DESCRIPTION
        decoded = decode_backend(description)
        assert isinstance(decoded, m.RowDescription)
        columns = [Column(i, f.name, f.type_oid, binary, self._plan(i, f))
                   for i, f, binary in result_columns(decoded, formats)]
        if not any(c.plan is not None for c in columns):
            return None
        return RowMasker(columns, self._detector, self._key, self._map.profile.rules)

    def copy_out(self, response: bytes) -> RowTransformer | None:
        if self._copy is None:
            return None
        decoded = decode_backend(response)
        assert isinstance(decoded, m.CopyOutResponse)
        return CopyMasker.start(self._copy, decoded.overall_format == 1, self._key,
                                self._detector, self._map.profile.rules)

    def _plan(self, index: int, field: m.FieldDescription) -> ColumnPlan:
        plan: Plan = None
        if field.table_oid and field.column_number > 0:
            if not self._map.lists(field.table_oid, field.column_number):
                # made since the catalog was read (or not committed): what it holds is not
                # known, so it is not shown; the next statement reads the catalog again
                self._unlisted((field.table_oid, field.column_number))
                raise unlisted_refusal(field.name)
            plan = self._map.plan(field.table_oid, field.column_number)
        elif self._names and self._tainted(index):
            plan = DERIVED
        if plan is DERIVED:
            if self._map.profile.on_derived == "deny":
                raise derived_refusal(field.name)
            return WHOLE
        if plan is not None:
            return plan  # type: ignore[return-value]  # a Strategy
        if self._detector is not None and field.type_oid in STRINGS:
            return DETECT
        return None

    def _tainted(self, index: int) -> bool:
        if self._outputs is False:
            self._outputs = output_taint(self._sql, self._names)
        outputs = self._outputs
        if not isinstance(outputs, tuple) or index >= len(outputs):
            return True  # unsure is tainted
        return outputs[index].taint == TAINTED
