"""A format-1 journal, built byte for byte as PHIGate wrote them before format 2.

Deterministic (a fixed key seed, journal id and clock; Ed25519 signatures are
deterministic), so the test pins its SHA-256: a format change that would stop
old journals from verifying cannot hide behind a regenerated fixture. Format 1:
``start`` has no ``format`` field and ``statement`` entries name only their
session, whose ``session_start`` says who and from where.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.journal import checkpoints
from gateway.journal.canonical import encode_line_pure, format_time
from gateway.journal.chain import genesis, link

JOURNAL_ID = "0123456789abcdef0123456789abcdef"
_SEED = hashlib.sha256(b"phigate journal format 1 fixture").digest()
_T0 = 1_764_000_000_000_000_000  # 2025-11-24T16:00:00Z

SESSION = "s-v1-alice"
ENTRIES: list[tuple[str, dict[str, object] | None]] = [
    ("start", {"journal": JOURNAL_ID, "by": "gateway", "pid": 4242, "host": "ward-7",
               "version": "0.9.0", "durability": "fsync", "parameters": "digest"}),
    ("checkpoint", None),
    ("auth", {"user": "alice", "client": "10.1.2.3:50123", "database": "clinic",
              "success": True, "method": "scram-sha-256", "tls": None}),
    ("session_start", {"session": SESSION, "identity": "alice", "groups": ["clinicians"],
                       "client": "10.1.2.3:50123", "database": "clinic",
                       "application_name": "psql", "tls": None, "reason": None}),
    ("statement", {"session": SESSION, "n": 1, "protocol": "simple",
                   "sql": "SELECT name FROM patients WHERE id = 7", "decision": "allow",
                   "tables": ["public.patients"]}),
    ("outcome", {"session": SESSION, "n": 1, "rows": 1, "bytes": 42, "duration_ms": 0.8,
                 "tags": ["SELECT 1"], "sqlstate": None}),
    ("statement", {"session": SESSION, "n": 2, "protocol": "simple",
                   "sql": "DELETE FROM patients", "decision": "deny",
                   "refused": {"sqlstate": "42501", "message": "denied by policy"}}),
    ("checkpoint", None),
    ("session_end", {"session": SESSION, "identity": "alice", "duration_s": 3.5,
                     "statements": 2, "refused": 1, "rows": 1, "end": "client_terminate"}),
    ("stop", {"journal": JOURNAL_ID, "pid": 4242}),
    ("checkpoint", None),
]


def private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(_SEED)


def build(directory: Path) -> Path:
    """Write the journal into ``directory`` (created); returns the public key file."""
    directory.mkdir(parents=True)
    key = private_key()
    head, lines, last = genesis(JOURNAL_ID), [], None
    for seq, (kind, fields) in enumerate(ENTRIES, 1):
        stamp = format_time(_T0 + seq * 250_000_000)
        if fields is None:
            last = checkpoints.sign(key, journal=JOURNAL_ID, seq=seq, head=head, time=stamp)
            entry = last.line_fields()
        else:
            entry = dict(fields)
        entry.update(seq=seq, time=stamp, type=kind, prev=head)
        line = encode_line_pure(entry)
        head = link(line[:-1])
        lines.append(line)
    (directory / "segment-00000000000000000001.jsonl").write_bytes(b"".join(lines))
    assert last is not None
    (directory / "checkpoint.json").write_bytes(last.to_json())
    public = directory.parent / "v1.pub"
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return public


def digest(directory: Path) -> str:
    """SHA-256 over the journal's files, in name order."""
    h = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()
