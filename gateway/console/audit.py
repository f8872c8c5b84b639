"""Journaling each look at PHI (``audit_access``) before the page that shows it is sent.

Through the same path as the CLI tools (``recording/spool.py``): the running gateway's spool,
or a direct append when no gateway holds the journal. The entry names the auditor (``as``),
the action (``console activity``, ``console session``, …) and the filter or session viewed.
One request at a time, so two views never race for the journal's lock. Raises
:class:`AccessNotRecorded` when the access cannot be journaled: the page then refuses.
Driven by ``routes``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..journal import JournalSettings
from ..recording.spool import AccessNotRecorded, access_fields, record_access

__all__ = ["AccessNotRecorded", "AccessJournal"]


class AccessJournal:
    def __init__(self, journal: JournalSettings | None) -> None:
        self._journal = journal
        self._lock = asyncio.Lock()

    async def record(self, auditor: str | None, action: str, *, session: str | None = None,
                     filters: dict[str, Any] | None = None,
                     sign_in: dict[str, str] | None = None) -> str:
        """How it was journaled; raises AccessNotRecorded. ``auditor`` None: nobody signed
        in (a refused sign-in)."""
        if self._journal is None:
            raise AccessNotRecorded("the config has no journal section to record this view in")
        fields = access_fields(f"console {action}", session=session, acting_as=auditor,
                               filters=filters, sign_in=sign_in)
        async with self._lock:
            try:
                return await asyncio.to_thread(record_access, self._journal, fields)
            except AccessNotRecorded:
                raise
            except Exception as e:  # any failure to journal means nothing is shown
                raise AccessNotRecorded(f"cannot journal this view: {e}") from e
