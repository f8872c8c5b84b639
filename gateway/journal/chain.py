"""The hash chain: what links one line to the next, and what a checkpoint signs.

Every line's ``prev`` is the SHA-256 of the exact bytes of the previous line
(without its newline), domain-separated so a journal hash can never be
confused with any other SHA-256 in the system. The first line of a journal
chains to a genesis value derived from the journal's id. Pure functions; the
writer, recovery and the verifier all use these and nothing else.
"""

from __future__ import annotations

import hashlib

LINE_DOMAIN = b"phigate-journal-line-v1\x00"
GENESIS_DOMAIN = b"phigate-journal-genesis-v1\x00"
CHECKPOINT_DOMAIN = "phigate-journal-checkpoint-v1"

# The journal format, recorded in every ``start`` entry (absent: format 1). Format 2: each
# ``statement`` entry carries the identity, client address and database itself, so it
# stands alone when the ``session_start`` it belongs to has been pruned. The chain (hashes,
# checkpoints) is the same in both; the verifier reads every format up to this one.
FORMAT_VERSION = 2

# Every line has these; callers may not pass them as fields.
RESERVED_FIELDS = frozenset({"seq", "time", "type", "prev"})
# A checkpoint line has exactly these keys, all covered by the signature
# (except the signature itself), so no byte of it can change unnoticed.
CHECKPOINT_FIELDS = frozenset({"seq", "time", "type", "prev", "covers", "head", "journal", "sig"})


def genesis(journal_id: str) -> str:
    """The ``prev`` of seq 1."""
    return hashlib.sha256(GENESIS_DOMAIN + journal_id.encode("utf-8")).hexdigest()


def link(line: bytes) -> str:
    """The hash the next line carries as ``prev``; ``line`` excludes its newline."""
    return hashlib.sha256(LINE_DOMAIN + line).hexdigest()


def checkpoint_message(*, journal: str, seq: int, covers: int, head: str, time: str) -> bytes:
    """The bytes an Ed25519 checkpoint signature covers.

    A fixed, line-oriented format rather than JSON, so an auditor can
    re-implement the check in any language without a canonical-JSON library.
    """
    return "\n".join((CHECKPOINT_DOMAIN, journal, str(seq), str(covers), head, time)).encode()
