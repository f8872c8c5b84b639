"""The ``access:`` section: where access requests live and how often the gateway looks.

Read by ``gateway/settings/config.py``. Without the section the store is
``access.sqlite3`` beside the journal directory (the gateway's data directory).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..settings.values import Section

DEFAULT_STORE = "access.sqlite3"
DEFAULT_POLL_S = 0.25  # revocations reach running sessions within this


@dataclass(frozen=True, slots=True)
class AccessSettings:
    store: Path | None = None
    poll_interval_s: float = DEFAULT_POLL_S


def parse_access(section: Section) -> AccessSettings:
    section.only("store", "poll_interval")
    poll = section.duration("poll_interval", DEFAULT_POLL_S)
    if not 0 < poll <= 1.0:
        raise section.error("poll_interval", "must be more than 0 and at most 1s "
                                             "(revocations must take effect within a second)")
    return AccessSettings(store=section.optional_path("store"), poll_interval_s=poll)


def store_path(access: AccessSettings | None, journal_dir: Path | None) -> Path | None:
    if access is not None and access.store is not None:
        return access.store
    return journal_dir.parent / DEFAULT_STORE if journal_dir is not None else None
