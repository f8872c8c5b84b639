"""The journal's settings, as validated values.

The gateway's config loader builds a :class:`JournalSettings` from the
``journal:`` YAML section (resolving paths); the CLI builds one from its
arguments. Nothing here reads files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Durability = Literal["fsync", "write"]
ParameterMode = Literal["full", "digest", "none"]

DURABILITIES: tuple[Durability, ...] = ("fsync", "write")
PARAMETER_MODES: tuple[ParameterMode, ...] = ("full", "digest", "none")

# Six years: the HIPAA documentation-retention period (45 CFR 164.316(b)(2)).
DEFAULT_RETENTION_DAYS = 2190
DEFAULT_SEGMENT_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class JournalSettings:
    """Where and how the journal is written.

    ``durability``: ``fsync`` acknowledges an entry only after fdatasync (survives
    power loss); ``write`` after the OS has the bytes (survives a gateway crash).
    ``parameters``: how bind parameters are recorded (see ``Journal.digest_parameters``).
    ``parameter_key``: HMAC key for parameter digests; derived from the signing key if None.
    ``immutable``: also ``chattr +i`` sealed segments where privileges allow.
    ``overlap_reads``: a statement that provably changes nothing runs upstream while its
    entry is being made durable; its answer is held until it is (README "Performance").
    """

    dir: Path
    signing_key: Path
    durability: Durability = "fsync"
    parameters: ParameterMode = "digest"
    checkpoint_copies: tuple[Path, ...] = ()
    checkpoint_url: str | None = None
    retention_days: int = DEFAULT_RETENTION_DAYS
    segment_max_bytes: int = DEFAULT_SEGMENT_MAX_BYTES
    segment_max_age_s: float = 86400.0
    checkpoint_interval_s: float = 1.0
    heartbeat_interval_s: float = 60.0
    parameter_key: bytes | None = field(default=None, repr=False)
    immutable: bool = True
    overlap_reads: bool = True

    def __post_init__(self) -> None:
        if self.durability not in DURABILITIES:
            raise ValueError(f"durability must be one of {', '.join(DURABILITIES)}")
        if self.parameters not in PARAMETER_MODES:
            raise ValueError(f"parameters must be one of {', '.join(PARAMETER_MODES)}")
        if self.retention_days < 1:
            raise ValueError("retention_days must be at least 1")
        if self.segment_max_bytes < 4096:
            raise ValueError("segment_max_bytes must be at least 4096")
        for name in ("segment_max_age_s", "checkpoint_interval_s", "heartbeat_interval_s"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number of seconds")
        if self.checkpoint_url is not None and not self.checkpoint_url.startswith(
                ("http://", "https://")):
            raise ValueError("checkpoint_url must be an http:// or https:// URL")
        if self.parameter_key is not None and len(self.parameter_key) < 16:
            raise ValueError("parameter_key must be at least 16 bytes")
