"""The row and byte limits of one allowed statement: the decision's own, what the cursors it
FETCHes from have left, and what is left of the identity's hourly PHI budgets."""

from __future__ import annotations

import datetime as dt

from policies.budget import PhiBudget
from policies.model import Decision

from ..errors import RowLimitExceeded
from ..proxy.hooks import RowLimit
from .session_state import SessionState

NO_ROW_LIMIT = 2**62  # a byte limit without a row limit: rows are not what is counted


def row_limit(state: SessionState, decision: Decision, cursors: tuple[str, ...],
              now: dt.datetime, rows: PhiBudget, payload: PhiBudget) -> RowLimit | None:
    limit, rule = decision.max_rows, ",".join(decision.rules)
    for cursor in cursors:
        if cursor in state.cursor_limits:
            remaining = state.cursor_limits[cursor] - state.cursor_rows.get(cursor, 0)
            limit = remaining if limit is None else min(limit, remaining)
    if decision.phi_tables and decision.max_phi_rows_per_hour is not None:
        remaining = (decision.max_phi_rows_per_hour
                     - rows.used(state.info.identity, now)) // decision.row_weight
        limit = remaining if limit is None else min(limit, remaining)
    max_bytes = _byte_limit(state, decision, cursors, now, payload)
    if limit is None and max_bytes is None:
        return None
    return RowLimit(
        max(limit, 0) if limit is not None else NO_ROW_LIMIT,
        RowLimitExceeded(
            f"phigate: rule {rule}: result exceeds max_rows ({_rows_text(decision)}) "
            "or the hourly PHI row budget; no more rows sent",
            hint="add a WHERE clause or a LIMIT, or ask for a rule that allows more"),
        max_bytes=max(max_bytes, 0) if max_bytes is not None else None,
        byte_error=RowLimitExceeded(
            f"phigate: rule {rule}: result exceeds max_bytes ({_bytes_text(decision)}) "
            "or the hourly PHI byte budget; no more rows sent",
            hint="select fewer rows or columns (one row that folds many rows counts "
                 "all their bytes), or ask for a rule that allows more"))


def _byte_limit(state: SessionState, decision: Decision, cursors: tuple[str, ...],
                now: dt.datetime, payload: PhiBudget) -> int | None:
    """Like the row limit: the statement's max_bytes, what its cursors have left, and what is
    left of the identity's hourly PHI byte budget."""
    limit = decision.max_bytes
    for cursor in cursors:
        if cursor in state.cursor_byte_limits:
            remaining = state.cursor_byte_limits[cursor] - state.cursor_bytes.get(cursor, 0)
            limit = remaining if limit is None else min(limit, remaining)
    if decision.phi_tables and decision.max_phi_bytes_per_hour is not None:
        remaining = decision.max_phi_bytes_per_hour - payload.used(state.info.identity, now)
        limit = remaining if limit is None else min(limit, remaining)
    return limit


def _rows_text(decision: Decision) -> str:
    if decision.row_weight > 1:
        return (f"{decision.max_rows} rows: each row carries {decision.row_weight} rows of "
                "PHI tables")
    return str(decision.max_rows)


def _bytes_text(decision: Decision) -> str:
    if decision.max_bytes is None:
        return "none"
    derived = ", derived from max_rows" if decision.max_bytes_derived else ""
    return f"{decision.max_bytes} bytes{derived}"
