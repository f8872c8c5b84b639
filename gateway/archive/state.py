"""What has been archived, remembered across restarts: ``archive-state.json`` in the journal dir.

The journal's ``archived`` entries are the signed record; this file is the
uploader's index of them, so a restart need not re-read six years of journal.
It also names the archive, so ``phigate journal prune`` knows which copies it
must confirm before deleting a segment. Written atomically after each batch of
``archived`` entries, with the seq of the newest one it reflects
(``journal_seq``): a gateway killed between journaling a batch and saving this
file catches up at start-up from the entries after that seq (:meth:`catch_up`,
which reads only the newest segments), so no object is journaled twice. A lost
file means reading the whole journal once; never a duplicate object
(``If-None-Match`` answers 412 for what is already there).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..journal import segments

STATE_FILE = "archive-state.json"
_ARCHIVED = b'"type":"archived"'  # canonical lines: a cheap test before parsing


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class ArchivedObject:
    kind: str  # segment | checkpoint | recording
    key: str
    version_id: str | None
    sha256: str
    size: int
    retain_until: str  # ISO 8601, UTC
    mode: str

    def fields(self, archive: str) -> dict[str, object]:
        """The ``archived`` journal entry's fields (``archive``: the s3:// URL it went to)."""
        return {"archive": archive, **asdict(self)}


@dataclass(slots=True)
class ArchiveState:
    url: str
    endpoint: str | None = None
    region: str | None = None
    objects: dict[str, ArchivedObject] = field(default_factory=dict)
    checkpoint_seq: int = 0  # the newest checkpoint uploaded
    journal_seq: int = 0  # the newest ``archived`` entry this index reflects

    @classmethod
    def load(cls, directory: Path) -> ArchiveState | None:
        try:
            raw = json.loads((directory / STATE_FILE).read_bytes())
        except FileNotFoundError:
            return None
        objects = {o["key"]: ArchivedObject(**o) for o in raw.get("objects", [])}
        return cls(url=raw["url"], endpoint=raw.get("endpoint"), region=raw.get("region"),
                   objects=objects, checkpoint_seq=int(raw.get("checkpoint_seq", 0)),
                   journal_seq=int(raw.get("journal_seq", 0)))

    def record(self, seq: int, obj: ArchivedObject, checkpoint_seq: int | None = None) -> None:
        """Note an ``archived`` entry (journaled at ``seq``) in the index."""
        if checkpoint_seq is not None:
            self.checkpoint_seq = max(self.checkpoint_seq, checkpoint_seq)
        else:
            self.objects[obj.key] = obj
        self.journal_seq = max(self.journal_seq, seq)

    def catch_up(self, directory: Path) -> int:
        """Add the ``archived`` entries journaled after ``journal_seq`` (a save the gateway
        did not live to make); returns how many. Reads only segments that can hold them."""
        found = 0
        for entry in archived_after(directory, self.journal_seq):
            if entry.get("archive") != self.url:
                continue  # shipped to another archive (the config changed since)
            obj = object_of(entry)
            if obj is None:
                continue  # not an entry this uploader wrote
            self.record(int(entry["seq"]), obj, _checkpoint_seq(obj))
            found += 1
        return found

    def save(self, directory: Path) -> None:
        data = {"url": self.url, "endpoint": self.endpoint, "region": self.region,
                "checkpoint_seq": self.checkpoint_seq, "journal_seq": self.journal_seq,
                "objects": [asdict(o) for o in self.objects.values()]}
        segments.atomic_write(directory / STATE_FILE,
                              json.dumps(data, indent=1).encode() + b"\n", 0o600)


_OBJECT_FIELDS = tuple(f.name for f in fields(ArchivedObject))


def checkpoint_seq_of(key: str) -> int:
    """``…/checkpoints/00000000000000001234.json`` → 1234."""
    return int(key.rsplit("/", 1)[-1].removesuffix(".json"))


def _checkpoint_seq(obj: ArchivedObject) -> int | None:
    return checkpoint_seq_of(obj.key) if obj.kind == "checkpoint" else None


def object_of(entry: dict[str, Any]) -> ArchivedObject | None:
    """The object an ``archived`` entry records (None: the entry lacks a field)."""
    try:
        return ArchivedObject(**{k: entry[k] for k in _OBJECT_FIELDS})
    except KeyError:
        return None


def archived_after(directory: Path, after: int) -> Iterator[dict[str, Any]]:
    """``archived`` entries with a seq above ``after``, reading only segments that hold any."""
    listed = segments.list_segments(directory)
    # Segment i holds seqs [first_seq_i, first_seq_{i+1}): skip those ending at or before ``after``.
    for i, segment in enumerate(listed):
        following = listed[i + 1].first_seq if i + 1 < len(listed) else None
        if following is not None and following <= after + 1:
            continue
        for line in segments.iter_written_lines(segment.path):
            if _ARCHIVED not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # verify reports it; the index just does not learn from it
            if isinstance(entry, dict) and entry.get("type") == "archived" and isinstance(
                    entry.get("seq"), int) and entry["seq"] > after:
                yield entry
