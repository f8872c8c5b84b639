"""The drill report: each check with pass/fail, seqs and timings, signed with the journal key.

The signature (Ed25519 over the canonical JSON of everything but ``sig``) lets an
auditor check a report file with the journal's public key alone; the ``drill``
journal entry carries the report's SHA-256, so the file is also bound to the
chain. Written by :mod:`.cli` and :mod:`.service`, checked by :func:`verify_report`.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..journal import segments
from ..journal.canonical import encode_compact

if TYPE_CHECKING:
    from ..settings.config import Settings
    from .settings import DrillSettings

REPORT_DOMAIN = b"phigate-drill-report-v1\n"


def report_dir(settings: Settings, drill: DrillSettings) -> Path:
    """Where signed reports (and the drill's seal requests) go."""
    assert settings.journal is not None
    return drill.report_dir or settings.journal.dir / "drills"


@dataclass(slots=True)
class Check:
    name: str
    passed: bool
    detail: str
    seqs: list[int] = field(default_factory=list)
    seconds: float | None = None


@dataclass(slots=True)
class DrillReport:
    identity: str
    started: float
    finished: float | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    checks: list[Check] = field(default_factory=list)

    def add(self, check: Check) -> None:
        self.checks.append(check)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def body(self) -> dict[str, object]:
        return {"identity": self.identity, "passed": self.passed,
                "started": _stamp(self.started),
                "finished": _stamp(self.finished or time.time()),
                "first_seq": self.first_seq, "last_seq": self.last_seq,
                "checks": [asdict(c) for c in self.checks]}


def sign(report: DrillReport, key: Ed25519PrivateKey) -> bytes:
    """The signed report file's bytes (one canonical JSON object and a newline)."""
    body = report.body()
    sig = key.sign(REPORT_DOMAIN + encode_compact(body).encode()).hex()
    return encode_compact({**body, "sig": sig}).encode() + b"\n"


def verify_report(data: bytes, key: Ed25519PublicKey) -> dict[str, object]:
    """The report's contents if its signature verifies; ValueError otherwise."""
    report = json.loads(data)
    if not isinstance(report, dict) or not isinstance(report.get("sig"), str):
        raise ValueError("not a signed drill report")
    sig = report.pop("sig")
    try:
        key.verify(bytes.fromhex(sig), REPORT_DOMAIN + encode_compact(report).encode())
    except (ValueError, InvalidSignature) as e:
        raise ValueError("drill report signature does not verify") from e
    return report


def write(directory: Path, data: bytes, started: float) -> Path:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = time.strftime("drill-%Y%m%dT%H%M%SZ", time.gmtime(started))
    path = directory / f"{name}-{hashlib.sha256(data).hexdigest()[:8]}.json"
    segments.atomic_write(path, data, 0o600)
    return path


def _stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"
