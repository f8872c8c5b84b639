"""Verifying the journal from the archive alone, for auditors: ``phigate journal verify s3://…``.

Lists every object version under the prefix, so what versioning shows is
reported: a key with more than one version (overwritten), a delete marker
(deleted), an object without Object Lock or with a retention shorter than
required. Then checks the chain of the archived segments exactly as the local
verifier does (seq, ``prev``, signatures, genesis or prune anchor), reading
the original version of each, ``parallel`` at a time. Each download is
streamed: its worker checks the lines of every block read as it arrives and
keeps only their results (seqs, edge hashes, checkpoints, ``archived``
entries), so memory is bounded by ``parallel`` × (one read block + the longest
entry), not by the segment size; the results are stitched in order. Every ``archived``
entry met in the chain must name a version that is still there with the
recorded SHA-256; every archived checkpoint must verify and be in the chain.
Reads only; driven by the archive CLI and the benchmark.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..journal.checkpoints import Checkpoint
from ..journal.scan import ChunkResult, scan_lines
from ..journal.stitch import ChainCheck, Failure, Tampered
from . import s3
from .settings import MIN_RETAIN_S, S3Location

_SEGMENT = "segments/segment-"
# A retention this much short of the requirement is not rounding: report it.
RETAIN_SLACK_S = 86400.0
READ_BLOCK = 1024 * 1024  # one GET body read; lines are checked block by block


@dataclass(frozen=True, slots=True)
class Finding:
    key: str
    what: str

    def __str__(self) -> str:
        return f"{self.key}: {self.what}"


@dataclass
class ArchiveReport:
    location: S3Location
    failure: Failure | None = None
    findings: list[Finding] = field(default_factory=list)
    segments: int = 0
    entries: int = 0
    bytes: int = 0
    checkpoints: int = 0
    recordings: int = 0
    seconds: float = 0.0
    journal_id: str | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    newest_checkpoint: Checkpoint | None = None
    # key -> (version id, sha256) as the archive holds it; for comparing a local journal.
    objects: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failure is None and not self.findings

    @property
    def entries_per_s(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        counts = (f"{self.entries} entries in {self.segments} archived segments "
                  f"({self.bytes / 1e6:.1f} MB), {self.checkpoints} checkpoints, "
                  f"{self.recordings} recordings in {self.seconds:.2f} s "
                  f"({self.entries_per_s:,.0f} entries/s)")
        lines = [f"{'OK' if self.ok else 'FAILED'}: archive {self.location}, journal "
                 f"{self.journal_id}, seq {self.first_seq}..{self.last_seq}: {counts}"]
        if self.failure is not None:
            lines.append(f"TAMPERED: {self.failure}")
        lines += [f"PROBLEM: {f}" for f in self.findings]
        cp = self.newest_checkpoint
        if cp is not None and self.last_seq is not None and cp.covers > self.last_seq:
            lines.append(f"note: the newest archived checkpoint (seq {cp.seq}) covers entries "
                         f"after seq {self.last_seq}: their segment is not archived yet "
                         "(still being written), or was removed")
        return "\n".join(lines)


@dataclass(slots=True)
class _Object:
    key: str
    version_id: str
    modified: dt.datetime


def verify_archive(client: Any, location: S3Location, key: Ed25519PublicKey, *,
                   parallel: int = 4, required_retain_s: float = MIN_RETAIN_S,
                   read_block: int = READ_BLOCK) -> ArchiveReport:
    """Verify ``location``; ArchiveUnavailable if it cannot be listed or read."""
    started = time.perf_counter()
    report = ArchiveReport(location)
    originals = _originals(client, location, report)
    _check_locks(client, location, originals, report, required_retain_s, parallel)
    checkpoints = _checkpoints(client, location, originals, key, report)
    segments = sorted((o for k, o in originals.items() if _is_segment(location, k)),
                      key=lambda o: o.key)
    report.recordings = sum(1 for k in originals if k.startswith(location.key("recordings/")))
    check = ChainCheck(key, watch=frozenset(cp.seq for cp in checkpoints))
    archived: list[dict[str, Any]] = []
    try:
        for scanned in _download(client, location, segments, key, parallel, read_block):
            obj = scanned.obj
            report.segments += 1
            report.objects[obj.key] = (obj.version_id, scanned.sha256)
            first_seq = int(obj.key.rsplit("-", 1)[1].split(".")[0])
            line = 1
            for n, piece in enumerate(scanned.pieces):
                if piece.tail:
                    raise Tampered(Failure(None, obj.key, None, "does not end with a newline"))
                check.add(piece, obj.key, line, segment_seq=first_seq if n == 0 else None)
                line += piece.lines
            archived += scanned.archived
        if segments:
            check.finish_anchor()
            check.finish_checkpoints(whole=True)
        for cp in checkpoints:
            if cp.seq <= (check.last_seq or 0):
                check.check_recorded(cp, location.key(f"checkpoints/{cp.seq:020d}.json"),
                                     rollback=True)
    except Tampered as e:
        report.failure = e.failure
    _check_archived(client, location, archived, originals, report)
    report.entries, report.bytes = check.entries, check.bytes
    report.journal_id, report.first_seq, report.last_seq = (check.journal_id, check.first_seq,
                                                            check.last_seq)
    report.newest_checkpoint = max(checkpoints, key=lambda c: c.seq, default=None)
    report.seconds = time.perf_counter() - started
    return report


def _is_segment(location: S3Location, key: str) -> bool:
    return key.startswith(location.key(_SEGMENT)) and key.endswith(".jsonl")


def _originals(client: Any, location: S3Location, report: ArchiveReport) -> dict[str, _Object]:
    """The first version of every key; later versions and delete markers are findings."""
    versions: dict[str, list[s3.VersionEntry]] = {}
    prefix = location.key("") if location.prefix else ""
    for entry in s3.list_versions(client, location.bucket, prefix):
        versions.setdefault(entry.key, []).append(entry)
    originals = {}
    for key_name, found in sorted(versions.items()):
        # S3 lists a key's versions newest first, and LastModified may have one-second
        # resolution: of versions made in the same second, the one listed last is the oldest.
        listed = [v for v in found if not v.deleted]
        kept = [v for _, v in sorted(enumerate(listed),
                                     key=lambda iv: (iv[1].modified, -iv[0]))]
        if any(v.deleted for v in found):
            report.findings.append(Finding(key_name, "deleted (a delete marker hides it)"))
        if len(kept) > 1:
            report.findings.append(Finding(key_name, (
                f"overwritten: {len(kept)} versions; the original is {kept[0].version_id}")))
        if kept:
            first = kept[0]
            originals[key_name] = _Object(key_name, first.version_id, first.modified)
    return originals


def _check_locks(client: Any, location: S3Location, originals: dict[str, _Object],
                 report: ArchiveReport, required_s: float, parallel: int) -> None:
    def one(obj: _Object) -> Finding | None:
        info = s3.head(client, location.bucket, obj.key, obj.version_id)
        if info is None:
            return Finding(obj.key, f"version {obj.version_id} is gone")
        if info.mode is None or info.retain_until is None:
            return Finding(obj.key, "not under Object Lock retention")
        need = obj.modified + dt.timedelta(seconds=required_s - RETAIN_SLACK_S)
        if info.retain_until < need:
            return Finding(obj.key, (
                f"retention until {info.retain_until.isoformat()} is shorter than required "
                f"({required_s / 86400:.0f} days after its upload on {obj.modified.date()})"))
        return None

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        report.findings += [f for f in pool.map(one, originals.values()) if f is not None]


def _checkpoints(client: Any, location: S3Location, originals: dict[str, _Object],
                 key: Ed25519PublicKey, report: ArchiveReport) -> list[Checkpoint]:
    found = []
    for name, obj in originals.items():
        if not name.startswith(location.key("checkpoints/")):
            continue
        data = b"".join(s3.get_chunks(client, location.bucket, name, obj.version_id))
        try:
            cp = Checkpoint.from_json(data)
        except ValueError as e:
            report.findings.append(Finding(name, f"not a checkpoint: {e}"))
            continue
        if not cp.is_signed_by(key):
            report.findings.append(Finding(name, "checkpoint signature does not verify"))
            continue
        report.objects[name] = (obj.version_id, hashlib.sha256(data).hexdigest())
        found.append(cp)
    report.checkpoints = len(found)
    return sorted(found, key=lambda c: c.seq)


@dataclass(slots=True)
class _Scanned:
    """One archived segment, checked as it streamed in: what the stitcher needs of it."""

    obj: _Object
    sha256: str = ""
    pieces: list[ChunkResult] = field(default_factory=list)
    archived: list[dict[str, Any]] = field(default_factory=list)


def _scan(client: Any, location: S3Location, obj: _Object, key: Ed25519PublicKey,
          read_block: int) -> _Scanned:
    """Worker thread: stream one object version, checking each run of whole lines."""
    scanned = _Scanned(obj)
    digest = hashlib.sha256()
    carried: list[bytes] = []  # the start of a line that continues in the next block
    faulted = False
    for block in s3.get_chunks(client, location.bucket, obj.key, obj.version_id, read_block):
        digest.update(block)
        cut = block.rfind(b"\n") + 1
        if not cut:
            carried.append(block)
            continue
        lines = b"".join([*carried, block[:cut]])
        carried = [block[cut:]] if cut < len(block) else []
        if not faulted:  # after a fault only the digest matters: the stitcher stops there
            faulted = _scan_piece(scanned, lines, key)
    rest = b"".join(carried)
    if rest and not faulted:
        _scan_piece(scanned, rest, key)  # an unterminated end: the stitcher reports it
    scanned.sha256 = digest.hexdigest()
    return scanned


def _scan_piece(scanned: _Scanned, data: bytes, key: Ed25519PublicKey) -> bool:
    piece = scan_lines(data, key)
    scanned.pieces.append(piece)
    scanned.archived += _archived_entries(data)
    return piece.fault is not None or bool(piece.tail)


def _download(client: Any, location: S3Location, objects: list[_Object],
              key: Ed25519PublicKey, parallel: int, read_block: int) -> Iterator[_Scanned]:
    """Objects scanned in order, at most ``parallel`` in flight or waiting (bounded memory)."""
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="phigate-verify") as pool:
        pending: list[Future[_Scanned]] = []
        queue = iter(objects)
        for obj in queue:
            pending.append(pool.submit(_scan, client, location, obj, key, read_block))
            if len(pending) >= parallel:
                break
        while pending:
            scanned = pending.pop(0).result()
            nxt = next(queue, None)
            if nxt is not None:
                pending.append(pool.submit(_scan, client, location, nxt, key, read_block))
            yield scanned


def _archived_entries(data: bytes) -> list[dict[str, Any]]:
    found = []
    for line in data.split(b"\n"):
        if b'"type":"archived"' in line:
            entry = json.loads(line)
            if entry.get("type") == "archived":
                found.append(entry)
    return found


def _check_archived(client: Any, location: S3Location, archived: list[dict[str, Any]],
                    originals: dict[str, _Object], report: ArchiveReport) -> None:
    """Each ``archived`` entry's version must still be there, with the recorded digest."""
    for entry in archived:
        key_name, version = str(entry.get("key")), entry.get("version_id")
        obj = originals.get(key_name)
        if obj is None:
            report.findings.append(Finding(key_name, (
                f"journaled as archived at seq {entry.get('seq')} but missing from the "
                "archive: deleted")))
            continue
        if version is not None and obj.version_id != version:
            report.findings.append(Finding(key_name, (
                f"the archive's original version is {obj.version_id}, the journal recorded "
                f"{version}")))
            continue
        held = report.objects.get(key_name)
        digest = held[1] if held else _head_digest(client, location, obj)
        if digest != entry.get("sha256"):
            report.findings.append(Finding(key_name, (
                "content differs from the SHA-256 the journal recorded")))


def _head_digest(client: Any, location: S3Location, obj: _Object) -> str | None:
    info = s3.head(client, location.bucket, obj.key, obj.version_id)
    return info.sha256 if info is not None else None
