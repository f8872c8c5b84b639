"""What a successful statement did to its session: the reason, and the names it made or
dropped, written to the session's one table of names (``SessionInfo.names``)."""

from __future__ import annotations

from policies.model import Decision

from .session_state import SessionState


def apply_effects(state: SessionState, decision: Decision) -> None:
    parts = decision.parts or (decision,)
    names = state.info.names
    for part, classified in zip(parts, decision.statements, strict=False):
        effect = classified.effect
        if effect is None:
            continue
        if effect.kind == "prepare" and effect.name and effect.statement:
            names.prepared(effect.name, classified.text, effect.statement)
        elif effect.kind == "deallocate":
            names.deallocated(effect.name)
        elif effect.kind == "declare" and effect.name and effect.statement:
            names.declared(effect.name, classified.text, effect.statement)
            state.cursor_rows[effect.name] = 0
            state.cursor_bytes[effect.name] = 0
            if part.max_rows is not None:
                state.cursor_limits[effect.name] = part.max_rows
            if part.max_bytes is not None:
                state.cursor_byte_limits[effect.name] = part.max_bytes
        elif effect.kind == "close":
            names.closed(effect.name)
        elif effect.kind == "discard_all":
            names.deallocated(None)
            names.closed(None)
        elif effect.kind == "set_reason":
            state.reason = effect.value or None
        elif effect.kind == "reset_reason":
            state.reason = None
