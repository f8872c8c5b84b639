"""Journal errors that never go on the wire.

Sessions only ever see :class:`gateway.errors.JournalFull` and
:class:`gateway.errors.JournalWriteFailed`. The errors here are for operators
and auditors: the gateway refuses to start on them and the CLI maps them to
exit codes.
"""

from __future__ import annotations

VERIFY_HINT = "run `phigate journal verify DIR --key PUB` to locate the damage"


class JournalError(Exception):
    """A journal problem an operator must deal with; never shown to a client."""


class JournalLocked(JournalError):
    """Another process (a running gateway or a prune) holds the journal directory."""


class KeyFileError(JournalError):
    """A signing or verification key could not be read or parsed."""


class JournalCorrupt(JournalError):
    """The journal on disk is not what the gateway wrote: damage or tampering.

    ``file``, ``line`` and ``seq`` locate the first problem found, when known.
    """

    def __init__(self, what: str, *, file: str | None = None, line: int | None = None,
                 seq: int | None = None) -> None:
        self.what = what
        self.file = file
        self.line = line
        self.seq = seq
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ", ".join(part for part in (
            f"seq {self.seq}" if self.seq is not None else None,
            f"{self.file} line {self.line}" if self.file and self.line else self.file,
        ) if part)
        return f"{where}: {self.what}" if where else self.what
