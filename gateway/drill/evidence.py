"""The drill's checks on what outlives the session: its recording, and its archive copy.

:func:`check_replay` replays the drill session's recording with the recording
wing's own reader and replay (as ``phigate replay --json`` does, after the file
matched the journal's ``session_end`` digest) and passes when the replayed
statements are exactly the drill's script, in order. :func:`check_archive`
asks the gateway to seal the active segment (a request file in the report
directory, which :mod:`.service` answers by sealing and starting an archive
pass), then waits, at most ``drill.archive_within``, until the segment holding
the drill's last entry is sealed, journaled as ``archived``, and its archive
copy confirmed by a HEAD (recorded version, SHA-256 of the local file, lock at
least until the recorded date). Driven by :mod:`.run`.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import time
from pathlib import Path

from ..archive import s3
from ..archive.prune_guard import confirm_copy
from ..archive.settings import ArchiveSettings
from ..archive.state import ArchivedObject, archived_after, object_of
from ..journal import segments
from ..recording.binding import Status, check_recording, scan_journal
from ..recording.errors import RecordingError
from ..recording.keys import load_master_key
from ..recording.reader import RecordingReader
from ..recording.replay import ReplayOptions, replay
from ..settings.config import RecordingSettings, Settings
from .report import Check, DrillReport
from .settings import DrillSettings

POLL_S = 0.2
SEAL_REQUEST = ".seal-request"  # suffix of the files the gateway's drill service answers


async def check_replay(recordings: RecordingSettings, journal_dir: Path, session: str,
                       script: list[str], report: DrillReport, deadline: float) -> None:
    started = time.monotonic()
    while True:
        replayed, problem = await asyncio.to_thread(_replayed, recordings, journal_dir, session)
        if replayed is not None or time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL_S)
    seconds = time.monotonic() - started
    if replayed is None:
        report.add(Check("recording replay", False, problem, seconds=seconds))
        return
    difference = script_difference(script, replayed)
    report.add(Check("recording replay", difference is None, difference or (
        f"{len(replayed)} statements replayed in the drill's order from {problem}"),
        seconds=seconds))


def script_difference(script: list[str], replayed: list[str]) -> str | None:
    """Where the replayed statements stop being the script (None: exactly the script)."""
    for n, (want, got) in enumerate(zip(script, replayed, strict=False), start=1):
        if want != got:
            return f"statement {n} replays as {got!r}, the drill ran {want!r}"
    if len(replayed) != len(script):
        return (f"the recording replays {len(replayed)} statements, the drill ran "
                f"{len(script)}")
    return None


def _replayed(recordings: RecordingSettings, journal_dir: Path, session: str
              ) -> tuple[list[str] | None, str]:
    """The statements the recording replays, or None and why not (yet)."""
    facts = scan_journal(journal_dir, session=session).get(session)
    if facts is None or not facts.recorded:
        failed = facts.failures[0].get("error") if facts and facts.failures else None
        return None, ("the drill session was not recorded" + (f": {failed}" if failed else ""))
    found = check_recording(recordings.dir, facts)
    if found.status is not Status.VERIFIED:
        return None, f"recording {facts.file}: {found.status.value}: {found.message}"
    out = io.StringIO()
    try:
        with RecordingReader(recordings.dir / str(facts.file), load_master_key(recordings)
                             ) as reader:
            reader.open()
            code = replay(reader, facts, found, ReplayOptions(instant=True, json=True), out)
    except RecordingError as e:
        return None, f"recording {facts.file} cannot be replayed: {e}"
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    if code != 0:
        why = next((e.get("message") for e in events if e.get("type") == "tampered"), "")
        return None, f"recording {facts.file} fails to replay: {why}"
    return [e["sql"] for e in events if e.get("type") == "statement"], (
        f"recording {facts.file} ({found.message})")


async def check_archive(settings: Settings, drill: DrillSettings, requests: Path,
                        report: DrillReport) -> None:
    """``requests``: the report directory, where the gateway looks for seal requests."""
    archive, journal = settings.archive, settings.journal
    assert archive is not None and journal is not None and report.last_seq is not None
    name, limit = "archive: drill segment", drill.archive_within_s
    started = time.monotonic()
    await asyncio.to_thread(_request_seal, requests)
    found, stage = await _wait_archived(archive, journal.dir, report.last_seq, started + limit)
    if found is None:
        report.add(Check(name, False, f"not in the archive within {limit:g} s: {stage}",
                         seconds=time.monotonic() - started))
        return
    seq, recorded, local = found
    client = await asyncio.to_thread(s3.make_client, archive)
    problem = await asyncio.to_thread(confirm_copy, client, archive.location, recorded, local)
    seconds = time.monotonic() - started
    report.add(Check(name, problem is None and seconds <= limit, problem or (
        f"{recorded.key} version {recorded.version_id} archived and confirmed (HEAD: sha256 "
        f"{recorded.sha256[:16]}…, {recorded.mode} until {recorded.retain_until}) "
        f"{seconds:.1f} s after the drill asked (limit {limit:g} s)"),
        seqs=[seq], seconds=seconds))


async def _wait_archived(archive: ArchiveSettings, journal_dir: Path, last_seq: int,
                         deadline: float
                         ) -> tuple[tuple[int, ArchivedObject, Path] | None, str]:
    """The ``archived`` entry of the segment holding ``last_seq`` once there, or how far
    it got by the deadline."""
    stage = "the gateway did not seal the drill's segment"
    while True:
        segment = await asyncio.to_thread(_sealed_segment, journal_dir, last_seq)
        if segment is not None:
            stage = f"{segment.name} sealed but not archived"
            key = archive.location.key(f"segments/{segment.name}")
            entry = await asyncio.to_thread(_archived_entry, journal_dir, last_seq,
                                            str(archive.location), key)
            if entry is not None:
                return (*entry, segment.path), stage
        if time.monotonic() >= deadline:
            return None, stage
        await asyncio.sleep(POLL_S)


def _request_seal(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{secrets.token_hex(8)}{SEAL_REQUEST}"
    segments.atomic_write(path, b"", 0o600)


def _sealed_segment(journal_dir: Path, seq: int) -> segments.SegmentFile | None:
    holding = None
    for segment in segments.list_segments(journal_dir):
        if segment.first_seq > seq:
            break
        holding = segment
    return holding if holding is not None and segments.is_sealed(holding.path) else None


def _archived_entry(journal_dir: Path, after: int, archive: str, key: str
                    ) -> tuple[int, ArchivedObject] | None:
    for entry in archived_after(journal_dir, after):
        if entry.get("archive") == archive and entry.get("key") == key:
            recorded = object_of(entry)
            if recorded is not None:
                return int(entry["seq"]), recorded
    return None
