"""Shared pieces for the recording unit tests: a key, settings, sessions and a journal stand-in."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.proxy.hooks import SessionInfo
from gateway.recording.keys import MasterKey
from gateway.settings.config import RecordingSettings


@dataclass
class FakeJournal:
    """Records what the recorder journals; ``refuse`` makes ``append`` fail like a full disk."""

    entries: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    refuse: Exception | None = None

    async def append(self, kind: str, fields: dict[str, object]) -> int:
        if self.refuse is not None:
            raise self.refuse
        self.entries.append((kind, dict(fields)))
        return len(self.entries)

    def append_later(self, kind: str, fields: dict[str, object]) -> None:
        self.entries.append((kind, dict(fields)))

    def of(self, kind: str) -> list[dict[str, object]]:
        return [fields for k, fields in self.entries if k == kind]


@pytest.fixture
def key() -> MasterKey:
    return MasterKey.from_bytes(os.urandom(32))


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    from gateway.recording.keys import generate_key_file

    return generate_key_file(tmp_path / "keys" / "recordings.key")


@pytest.fixture
def settings(tmp_path: Path, key_file: Path) -> RecordingSettings:
    return RecordingSettings(dir=tmp_path / "recordings", key_file=key_file, capture_rows=3,
                             flush_interval_s=0.05)


def session_info(session_id: str = "0123456789abcdef") -> SessionInfo:
    return SessionInfo(session_id=session_id, identity="alice", groups=frozenset({"clinicians"}),
                       client_ip="127.0.0.1", client_port=50000, database="clinic",
                       application_name="psql", tls=None, started_at=1_790_000_000.0)
