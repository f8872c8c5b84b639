"""What can go wrong with the archive: unusable bucket, unreachable store, refused objects.

None of these go on the wire: the archive never blocks a statement. The start-up
check raises :class:`ArchiveUnusable` (the gateway refuses to start); the uploader
logs :class:`ArchiveUnavailable` and retries; verification reports findings.
"""

from __future__ import annotations


class ArchiveError(Exception):
    """Base of the archive's errors; ``message`` is safe to show an operator."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ArchiveUnusable(ArchiveError):
    """The bucket cannot honour the configured lock mode (no Object Lock, no versioning)."""


class ArchiveUnavailable(ArchiveError):
    """The store could not be reached or refused the request (network, credentials, 5xx)."""


class ArchiveConflict(ArchiveError):
    """An object already exists under the key with different content: never overwritten."""
