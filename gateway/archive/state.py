"""What has been archived, remembered across restarts: ``archive-state.json`` in the journal dir.

The journal's ``archived`` entries are the signed record; this file is the
uploader's index of them, so a restart need not re-read six years of journal.
It also names the archive, so ``phigate journal prune`` knows which copies it
must confirm before deleting a segment. Written atomically after each batch of
``archived`` entries; losing it costs only HEADs (``If-None-Match`` answers 412
for what is already there), never a duplicate object.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..journal import segments

STATE_FILE = "archive-state.json"


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

    def fields(self) -> dict[str, object]:
        """The ``archived`` journal entry's fields."""
        return dict(asdict(self))


@dataclass(slots=True)
class ArchiveState:
    url: str
    endpoint: str | None = None
    region: str | None = None
    objects: dict[str, ArchivedObject] = field(default_factory=dict)
    checkpoint_seq: int = 0  # the newest checkpoint uploaded

    @classmethod
    def load(cls, directory: Path) -> ArchiveState | None:
        try:
            raw = json.loads((directory / STATE_FILE).read_bytes())
        except FileNotFoundError:
            return None
        objects = {o["key"]: ArchivedObject(**o) for o in raw.get("objects", [])}
        return cls(url=raw["url"], endpoint=raw.get("endpoint"), region=raw.get("region"),
                   objects=objects, checkpoint_seq=int(raw.get("checkpoint_seq", 0)))

    def save(self, directory: Path) -> None:
        data = {"url": self.url, "endpoint": self.endpoint, "region": self.region,
                "checkpoint_seq": self.checkpoint_seq,
                "objects": [asdict(o) for o in self.objects.values()]}
        segments.atomic_write(directory / STATE_FILE,
                              json.dumps(data, indent=1).encode() + b"\n", 0o600)
