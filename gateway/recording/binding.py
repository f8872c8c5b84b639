"""What the journal says about each session and its recording, and whether the file agrees.

One pass over the journal collects, per session: ``session_start``,
``recording_started`` (the file name), ``recording_checkpoint`` entries (the
digest of a prefix), ``recording_failed``, ``session_end`` (the final digest
under ``recording``) and the statement, denial and row counts. A gateway
``start`` entry marks sessions still open at that moment as cut off (the
previous gateway died). :func:`check_recording` then compares a file's bytes
with that: equal to the final digest, or (no end yet) extending the latest
checkpoint. Reads only the journal's bytes; ``phigate journal verify`` checks
those. Used by ``sessions list``, ``replay`` and ``journal verify --recordings``.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..journal.reader import decision_of, iter_entries
from .events import JOURNAL_FIELD

READ_BLOCK = 1024 * 1024


@dataclass(slots=True)
class SessionFacts:
    session: str
    start: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    file: str | None = None  # the recording, relative to recordings.dir
    key_id: str | None = None
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    statements: int = 0
    denied: int = 0
    rows: int = 0
    cut_off: bool = False  # the gateway restarted while the session was open

    @property
    def recorded(self) -> bool:
        return self.file is not None

    @property
    def final(self) -> dict[str, Any] | None:
        """The recording fields of ``session_end``, if the session ended."""
        if self.end is None:
            return None
        value = self.end.get(JOURNAL_FIELD)
        return value if isinstance(value, dict) else None


def scan_journal(journal_dir: Path, session: str | None = None) -> dict[str, SessionFacts]:
    """Facts per session id, in order of first appearance (optionally one session only)."""
    sessions: dict[str, SessionFacts] = {}
    for entry in iter_entries(journal_dir):
        fields = entry.fields
        kind = fields.get("type")
        if kind == "start":
            for open_facts in sessions.values():
                open_facts.cut_off |= open_facts.start is not None and open_facts.end is None
            continue
        sid = entry.session
        if sid is None or (session is not None and sid != session):
            continue
        facts = sessions.get(sid)
        if facts is None:
            facts = sessions[sid] = SessionFacts(sid)
        _apply(facts, kind, fields)
    return sessions


def _apply(facts: SessionFacts, kind: object, fields: dict[str, Any]) -> None:
    if kind == "statement":
        facts.statements += 1
        if decision_of(fields) == "deny" or "refused" in fields:
            facts.denied += 1
    elif kind == "outcome":
        rows = fields.get("rows")
        facts.rows += rows if isinstance(rows, int) else 0
    elif kind == "session_start":
        facts.start = fields
    elif kind == "session_end":
        facts.end = fields
    elif kind == "recording_started":
        facts.file = str(fields.get("file"))
        facts.key_id = str(fields.get("key_id"))
    elif kind == "recording_checkpoint":
        facts.checkpoints.append(fields)
    elif kind == "recording_failed":
        facts.failures.append(fields)


class Status(enum.Enum):
    VERIFIED = "verified"  # equals the journal's final digest
    INCOMPLETE = "incomplete"  # no session_end: extends the latest checkpoint (if any)
    FAILED = "failed"  # the journal says the recording could not be written
    MISSING = "missing"
    MISMATCH = "mismatch"  # edited, truncated or extended

    @property
    def ok(self) -> bool:
        return self in (Status.VERIFIED, Status.INCOMPLETE, Status.FAILED)


@dataclass(frozen=True, slots=True)
class Check:
    session: str
    status: Status
    message: str
    bytes: int = 0


def check_recording(recordings_dir: Path, facts: SessionFacts) -> Check:
    """Compare the session's recording file with what the journal recorded about it."""
    sid = facts.session
    if facts.file is None:
        return Check(sid, Status.MISSING, "the journal has no recording for this session")
    path = recordings_dir / facts.file
    final = facts.final
    if final is not None and "failed" in final:
        return Check(sid, Status.FAILED, f"recording failed during the session "
                                         f"({final['failed']}); journaled at session end")
    marks = sorted({int(c["bytes"]) for c in facts.checkpoints if isinstance(c.get("bytes"), int)})
    if final is not None and isinstance(final.get("bytes"), int):
        marks.append(int(final["bytes"]))
    try:
        size, digests = _digests(path, marks)
    except FileNotFoundError:
        return Check(sid, Status.MISSING, f"recording {facts.file} is missing")
    except OSError as e:
        return Check(sid, Status.MISSING, f"recording {facts.file} cannot be read: {e.strerror}")
    if final is not None:
        return _against_end(sid, facts.file, final, size, digests)
    for checkpoint in facts.checkpoints:
        expected = checkpoint.get("sha256")
        if digests.get(int(checkpoint.get("bytes", -1))) != expected:
            return Check(sid, Status.MISMATCH,
                         f"recording {facts.file} ({size} bytes) does not extend the journal's "
                         f"checkpoint of its first {checkpoint.get('bytes')} bytes "
                         f"(truncated or edited)", size)
    why = ("the gateway stopped before the session ended" if facts.cut_off
           else "no session end in the journal (live, or the gateway stopped)")
    return Check(sid, Status.INCOMPLETE, why, size)


def _against_end(sid: str, file: str, final: dict[str, Any], size: int,
                 digests: dict[int, str]) -> Check:
    expected_size, expected = final.get("bytes"), final.get("sha256")
    if size == expected_size and digests.get(size) == expected:
        return Check(sid, Status.VERIFIED, f"matches the journal's session_end (sha256 "
                                           f"{str(expected)[:16]}…, {size} bytes, "
                                           f"{final.get('chunks')} chunks)", size)
    if isinstance(expected_size, int) and size < expected_size:
        what = f"truncated: {size} of {expected_size} bytes"
    elif isinstance(expected_size, int) and size > expected_size:
        what = f"{size - expected_size} bytes added beyond the {expected_size} journaled"
    else:
        what = "edited: same size, different SHA-256"
    return Check(sid, Status.MISMATCH, f"recording {file} does not match the journal "
                                       f"({what})", size)


def _digests(path: Path, marks: list[int]) -> tuple[int, dict[int, str]]:
    """The file's size and the SHA-256 of its first ``m`` bytes for each mark it reaches."""
    hasher = hashlib.sha256()
    digests: dict[int, str] = {}
    position = 0
    pending = sorted(set(marks))
    with open(path, "rb") as f:
        while True:
            want = READ_BLOCK
            if pending and pending[0] > position:
                want = min(want, pending[0] - position)
            block = f.read(want)
            if not block:
                break
            hasher.update(block)
            position += len(block)
            while pending and pending[0] == position:
                digests[pending.pop(0)] = hasher.hexdigest()
            while pending and pending[0] < position:
                pending.pop(0)
    digests[position] = hasher.hexdigest()
    return position, digests


def check_all(journal_dir: Path, recordings_dir: Path) -> tuple[list[Check], list[str]]:
    """Every recorded session checked; and files in ``recordings_dir`` the journal never
    mentions (reported, not failed: a pruned journal leaves recordings behind)."""
    sessions = scan_journal(journal_dir)
    checks = [check_recording(recordings_dir, facts) for facts in sessions.values()
              if facts.recorded]
    known = {facts.file for facts in sessions.values() if facts.recorded}
    unknown = sorted(str(p.relative_to(recordings_dir))
                     for p in recordings_dir.rglob("*.phirec")
                     if str(p.relative_to(recordings_dir)) not in known)
    return checks, unknown
