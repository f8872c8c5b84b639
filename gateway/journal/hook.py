"""The journal hook: who, from where, when, what, the decision, and the outcome.

Attached to the relay's hook chain after the policy hook (so it sees the
decision) and before the recorder. Write-ahead and fail-closed: a
``statement`` entry is durable before the statement is forwarded or refused
(for a pipelined one the relay waits for it, see ``proxy/hooks.py``),
and when it cannot be written the statement is refused with 53100/58030
(raised by ``Journal.append``). Outcomes, logins and session ends are
appended without blocking the client.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from ..proxy.hooks import (
    MUST_AWAIT,
    AuthEvent,
    Hook,
    MustAwait,
    Outcome,
    Phase,
    SessionInfo,
    SessionSummary,
    Statement,
    Verdict,
)
from ..settings.config import Settings
from . import Journal

POLICY_TAG = "policy"  # statement.tags key where the policy hook leaves its journal fields
# The statement entry's seq, for alerts to point at: tagged once known (see journal_seq).
JOURNAL_SEQ_TAG = "journal_seq"
_PROTOCOL = {Phase.SIMPLE: "simple", Phase.PARSE: "extended", Phase.EXECUTE: "extended",
             Phase.FUNCTION: "function"}


PoliciesInForce = Callable[[], dict[str, str]]  # policy file → SHA-256 of what is enforced


class JournalHook(Hook):
    def __init__(self, journal: Journal, policies_in_force: PoliciesInForce | None = None
                 ) -> None:
        self.journal = journal
        self._policies_in_force = policies_in_force
        self._overlap = journal.settings.overlap_reads
        # Per session: the who/where every statement entry repeats (journal format 2), built
        # once so each statement only copies it.
        self._who: dict[str, dict[str, object]] = {}

    def authenticated(self, event: AuthEvent) -> None:
        fields: dict[str, object] = {
            "user": event.user, "client": f"{event.client_ip}:{event.client_port}",
            "database": event.database, "success": event.success, "method": event.method,
            "tls": event.tls,
        }
        if event.failure:
            fields["failure"] = event.failure
        fields.update(event.details)  # e.g. SSO issuer, subject, token id: never a credential
        self.journal.append_later("auth", fields)

    async def session_started(self, session: SessionInfo) -> None:
        self._who[session.session_id] = _who(session)
        await self.journal.append("session_start", {
            "session": session.session_id, "identity": session.identity,
            "groups": sorted(session.groups),
            "client": f"{session.client_ip}:{session.client_port}",
            "database": session.database, "application_name": session.application_name,
            "tls": session.tls, "reason": session.reason,
        })

    def before_statement_now(self, statement: Statement) -> Verdict | None | MustAwait:
        """Every statement but a strict write-ahead one, without a coroutine: its entry is
        queued and the relay holds its answer (or its frame) until the entry is durable."""
        refused = statement.verdict.refusal
        if statement.phase is Phase.PARSE and refused is None:
            return None  # nothing runs at Parse; the Execute is journaled
        if refused is not None:
            return MUST_AWAIT
        # No callback per entry: the seq is read from the future when needed (journal_seq),
        # the append's duration is measured by the writer per batch (Journal.observe_appends).
        if statement.read_only and self._overlap:
            # Runs while the entry is made durable; the relay holds its answer until then.
            statement.durable = self.journal.append_deferred(
                "statement", self._entry(statement), handed_over=True)
            return None
        if statement.pipelined:
            # The statements behind it are decided while this entry is written (one write
            # for the pipeline); the relay forwards this one once the entry is durable.
            statement.write_ahead = self.journal.append_deferred(
                "statement", self._entry(statement), handed_over=True)
            return None
        return MUST_AWAIT

    async def before_statement(self, statement: Statement) -> Verdict | None:
        verdict = self.before_statement_now(statement)
        if verdict is not MUST_AWAIT:
            return verdict  # type: ignore[return-value]  # (None: the entry is queued)
        statement.tags[JOURNAL_SEQ_TAG] = await self.journal.append(
            "statement", self._entry(statement), handed_over=True)
        return None

    def _entry(self, statement: Statement) -> dict[str, object]:
        """The ``statement`` entry's fields: who, where, what, and the decision."""
        session = statement.session
        who = self._who.get(session.session_id)
        fields = dict(who) if who is not None else _who(session)
        fields["n"] = statement.number
        fields["protocol"] = _PROTOCOL[statement.phase]
        fields["sql"] = statement.sql
        if statement.phase is not Phase.SIMPLE:
            fields["statement_name"] = statement.statement_name
            parameters = self.journal.digest_parameters(statement.parameters)
            if parameters is not None:
                fields["parameters"] = parameters
        policy = statement.tags.get(POLICY_TAG)
        if isinstance(policy, dict):
            fields.update(policy)
        refused = statement.verdict.refusal
        if refused is not None:
            fields["refused"] = {"sqlstate": refused.sqlstate, "message": refused.message}
        return fields

    def after_statement(self, statement: Statement, outcome: Outcome) -> None:
        if JOURNAL_SEQ_TAG not in statement.tags:
            seq = journal_seq(statement)  # durable by now: the relay released its answer
            if seq is not None:
                statement.tags[JOURNAL_SEQ_TAG] = seq  # for the hooks after this one
        fields: dict[str, object] = {
            "session": statement.session.session_id, "n": statement.number,
            "rows": outcome.rows, "bytes": outcome.bytes_to_client,
            "duration_ms": round(outcome.duration_s * 1000, 3),
            "tags": outcome.command_tags, "sqlstate": outcome.sqlstate,
        }
        if outcome.error_message:
            fields["error"] = outcome.error_message
        if outcome.refused:
            fields["refused"] = True
        if outcome.suspended:
            fields["suspended"] = True
        if outcome.row_limit_hit:
            fields["row_limit_hit"] = True
        if outcome.byte_limit_hit:  # "bytes" above is what was sent before the cut
            fields["byte_limit_hit"] = True
        if outcome.transformed:  # what masking did: columns, strategies, detections
            fields["masking"] = outcome.transformed
        self.journal.append_later("outcome", fields, handed_over=True)

    def session_ended(self, session: SessionInfo, summary: SessionSummary) -> None:
        self._who.pop(session.session_id, None)
        self.journal.append_later("session_end", {
            "session": session.session_id, "identity": session.identity,
            "duration_s": round(time.time() - session.started_at, 3),
            "statements": summary.statements, "refused": summary.refused,
            "rows": summary.rows, "end": summary.end.value, **summary.annotations,
        })

    def config_loaded(self, settings: Settings) -> None:
        in_force = self._policies_in_force() if self._policies_in_force else None
        self.journal.append_later("config_loaded", config_fields(settings, in_force))


def journal_seq(statement: Statement) -> int | None:
    """The seq of the statement's entry: tagged, or of its durable entry; None while it is
    not durable (or never was)."""
    seq = statement.tags.get(JOURNAL_SEQ_TAG)
    if isinstance(seq, int):
        return seq
    durable = statement.durable or statement.write_ahead
    if durable is None or not durable.done() or durable.cancelled() or durable.exception():
        return None
    return durable.result()


def _who(session: SessionInfo) -> dict[str, object]:
    """Who ran a statement, from where, on which database: each statement entry stands alone."""
    return {"session": session.session_id, "identity": session.identity,
            "client": f"{session.client_ip}:{session.client_port}",
            "database": session.database}


def config_fields(settings: Settings, policies_in_force: dict[str, str] | None = None
                  ) -> dict[str, object]:
    """What ``config_loaded`` records: hashes that pin exactly which files were in force.

    ``policy_files`` hashes the files as they are on disk; ``policies`` the ones enforced.
    They differ after a reload whose policy files were rejected (the old ones stay).
    """
    on_disk = {}
    for path in settings.policy_files:
        try:
            on_disk[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as e:
            on_disk[str(path)] = f"unreadable: {e.strerror}"
    fields: dict[str, object] = {
        "config": str(settings.source), "sha256": settings.sha256,
        "policies": on_disk if policies_in_force is None else policies_in_force,
        "users": len(settings.users), "databases": sorted(settings.databases)}
    if policies_in_force is not None and policies_in_force != on_disk:
        fields["policy_files"] = on_disk
        fields["policy_reload_failed"] = True
    return fields
