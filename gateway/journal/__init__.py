"""The hash-chained, signed, write-ahead audit journal.

``Journal`` (open/append/close) is what the gateway uses; ``verify_journal``
and the ``phigate journal`` commands (:mod:`.cli`) are what auditors use.
"""

from .errors import JournalCorrupt, JournalError, JournalLocked, KeyFileError
from .journal import Journal
from .settings import JournalSettings

__all__ = [
    "Journal",
    "JournalCorrupt",
    "JournalError",
    "JournalLocked",
    "JournalSettings",
    "KeyFileError",
]
