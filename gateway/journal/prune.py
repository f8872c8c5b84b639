"""Retention: removing whole sealed segments older than the retention period.

A segment goes only if every entry in it is older than ``retention_days``
(default six years), only oldest-first (so what remains is one contiguous
chain), and never the active one. Before anything is deleted the journal
records a ``prune`` entry naming each removed segment with its seq range, the
chain hash of its last line and the SHA-256 of the whole file, then signs a
checkpoint: the remaining chain still verifies, its first ``prev`` vouched
for by the signed ``prune`` entry. Driven by ``phigate journal prune`` (or the
gateway, on a schedule).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from . import segments
from .canonical import format_time
from .chain import link
from .journal import Journal
from .segments import SegmentFile

log = logging.getLogger("phigate.journal")

_DAY_NS = 86_400 * 1_000_000_000


class PruneRefused(ValueError):
    """A retention shorter than the journal's own was asked for."""


# Asked about each expired segment before it goes; a reason keeps it (and all after it).
PruneGuard = Callable[[SegmentFile], str | None]


@dataclass(frozen=True, slots=True)
class PruneResult:
    cutoff: str
    removed: list[dict[str, object]] = field(default_factory=list)
    entry_seq: int | None = None
    kept: str | None = None  # why pruning stopped early (the guard's reason)


async def prune(journal: Journal, retention_days: int | None = None, *,
                now_ns: int | None = None, guard: PruneGuard | None = None) -> PruneResult:
    """Remove segments whose newest entry is older than ``retention_days``.

    ``guard`` (the archive's) may keep a segment, e.g. one whose archived copy
    is not confirmed; pruning then stops there so what remains stays contiguous.
    """
    days = journal.settings.retention_days if retention_days is None else retention_days
    if days < journal.settings.retention_days:
        raise PruneRefused(f"refusing to prune below the journal's retention of "
                           f"{journal.settings.retention_days} days")
    cutoff = format_time((now_ns if now_ns is not None else time.time_ns()) - days * _DAY_NS)
    chosen = await asyncio.to_thread(_expired, journal, cutoff)
    kept = None
    if guard is not None:
        chosen, kept = await asyncio.to_thread(_guarded, chosen, guard)
    if not chosen:
        return PruneResult(cutoff, kept=kept)
    removed = await asyncio.to_thread(lambda: [_describe(s) for s in chosen])
    seq = await journal.append("prune", {"retention_days": days, "cutoff": cutoff,
                                         "removed": removed})
    # Signed before deleting, so the shortened chain is vouched for from the start.
    await journal.checkpoint()
    await asyncio.to_thread(_remove, journal, chosen)
    return PruneResult(cutoff, removed, seq, kept)


def _guarded(chosen: list[SegmentFile], guard: PruneGuard) -> tuple[list[SegmentFile], str | None]:
    for index, segment in enumerate(chosen):
        reason = guard(segment)
        if reason is not None:
            return chosen[:index], f"kept {segment.name} and later segments: {reason}"
    return chosen, None


def _expired(journal: Journal, cutoff: str) -> list[SegmentFile]:
    found = segments.list_segments(journal.settings.dir)
    chosen = []
    for segment in found[:-1]:
        last, _, terminated = segments.last_line(segment.path)
        if last is None or not terminated or not segments.is_sealed(segment.path):
            break
        newest = json.loads(last).get("time")
        if not isinstance(newest, str) or not _before(newest, cutoff):
            break
        chosen.append(segment)
    return chosen


def _before(stamp: str, cutoff: str) -> bool:
    try:
        return datetime.fromisoformat(stamp) < datetime.fromisoformat(cutoff)
    except ValueError:
        return False


def _describe(segment: SegmentFile) -> dict[str, object]:
    last, size, _ = segments.last_line(segment.path)
    if last is None:
        raise ValueError(f"{segment.name} has no complete line")
    digest = hashlib.sha256()
    with open(segment.path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    entry = json.loads(last)
    return {"segment": segment.name, "first_seq": segment.first_seq, "last_seq": entry["seq"],
            "last_hash": link(last), "last_time": entry.get("time"), "bytes": size,
            "sha256": digest.hexdigest()}


def _remove(journal: Journal, chosen: list[SegmentFile]) -> None:
    for segment in chosen:
        segments.remove_sealed(segment.path)
        log.info("journal: pruned %s", segment.name)
    segments.fsync_dir(journal.settings.dir)
