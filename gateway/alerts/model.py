"""What the alert rules look at (:class:`Event`) and what they produce (:class:`Alert`).

Plain frozen values: the hook builds events, the engine builds alerts, the
dispatcher and the sinks read them. ``Alert.document()`` is the JSON the
webhook signs and the log sink prints; ``Alert.journal_fields()`` is the
journal's ``alert`` entry.
"""

from __future__ import annotations

import enum
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field


class EventKind(enum.Enum):
    LOGIN_FAILED = "login_failed"
    SESSION_STARTED = "session_started"
    STATEMENT = "statement"  # decided, before it runs (or was refused)
    OUTCOME = "outcome"  # its result is complete
    JOURNAL_FAILED = "journal_failed"
    ACCESS_REQUESTED = "access_requested"  # someone asked for a requires_approval rule


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened; fields a kind does not have stay at their defaults."""

    kind: EventKind
    identity: str | None = None  # for LOGIN_FAILED: the user name as the client gave it
    client_ip: str | None = None
    database: str | None = None
    session: str | None = None
    statement: int | None = None  # the statement's number within its session
    journal_seq: int | None = None  # the triggering journal entry, when the journal said
    refused_sqlstate: str | None = None
    policy_rules: tuple[str, ...] = ()
    bulk_export: bool = False
    break_glass: bool = False  # an allowing rule had `alert: true`
    phi_tables: tuple[str, ...] = ()
    rows: int = 0
    row_limit_hit: bool = False
    message: str | None = None  # what went wrong (the gateway's own words, never client text)
    details: Mapping[str, object] = field(default_factory=dict)  # e.g. the access request


@dataclass(frozen=True, slots=True)
class Trigger:
    """A condition's finding. The first subject names the alert; an event is already covered
    (deduplicated) when any of its subjects alerted within the rule's dedupe window."""

    subjects: tuple[str, ...]
    summary: str
    details: Mapping[str, object] = field(default_factory=dict)


GATEWAY_HOST = socket.gethostname()


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    rule: str
    condition: str
    subject: str
    summary: str
    time: str  # ISO 8601, from the gateway's clock
    sinks: tuple[str, ...]
    identity: str | None = None
    client_ip: str | None = None
    database: str | None = None
    session: str | None = None
    statement: int | None = None
    journal_seq: int | None = None
    details: Mapping[str, object] = field(default_factory=dict)

    def document(self) -> dict[str, object]:
        """The webhook body and log line: every key always present, so receivers can rely
        on the shape."""
        return {
            "id": self.id, "rule": self.rule, "condition": self.condition,
            "subject": self.subject, "summary": self.summary, "time": self.time,
            "identity": self.identity, "client_ip": self.client_ip, "database": self.database,
            "session": self.session, "statement": self.statement,
            "journal_seq": self.journal_seq, "gateway": GATEWAY_HOST,
            "details": dict(self.details),
        }

    def journal_fields(self) -> dict[str, object]:
        """The journal's ``alert`` entry (``seq`` is the journal's own; the trigger's is
        ``trigger_seq``)."""
        fields: dict[str, object] = {
            "alert": self.id, "rule": self.rule, "condition": self.condition,
            "subject": self.subject, "summary": self.summary, "sinks": list(self.sinks),
        }
        optional = {"identity": self.identity, "client": self.client_ip,
                    "database": self.database, "session": self.session,
                    "n": self.statement, "trigger_seq": self.journal_seq}
        fields.update((k, v) for k, v in optional.items() if v is not None)
        if self.details:
            fields["details"] = dict(self.details)
        return fields
