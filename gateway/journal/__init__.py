"""The hash-chained, signed, write-ahead audit journal.

``Journal`` (open / append / append_later / close) is what the gateway uses;
``verify_journal`` and the ``phigate journal`` commands (:mod:`.cli`) are what
auditors use. Module map: settings → canonical, chain → segments, writer,
checkpoints, recovery → journal; scan, stitch → verify; reader,
prune, keys, cli.
"""

from .errors import JournalCorrupt, JournalError, JournalLocked, KeyFileError
from .journal import Journal, JournalStats
from .settings import JournalSettings
from .verify import VerifyReport, verify_journal

__all__ = [
    "Journal",
    "JournalCorrupt",
    "JournalError",
    "JournalLocked",
    "JournalSettings",
    "JournalStats",
    "KeyFileError",
    "VerifyReport",
    "verify_journal",
]
