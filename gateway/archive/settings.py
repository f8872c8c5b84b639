"""The ``archive:`` section: where sealed evidence goes (S3 Object Lock) and for how long.

Parsed by ``gateway/settings/config.py`` at start-up; used by the uploader, the
start-up check and ``phigate journal verify s3://…``. The retention guard lives
here: a ``retain`` below six years is a config error unless the operator says
``allow_short_retention: true`` (tests and throwaway setups only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..settings.values import Section

LockMode = Literal["compliance", "governance"]
LOCK_MODES: tuple[LockMode, ...] = ("compliance", "governance")
CREDENTIAL_SOURCES = ("env", "file", "instance")
DAYS_PER_YEAR = 365.25  # with leap days, so "6y" is never a day short
# Six years (45 CFR 164.316(b)(2)).
MIN_RETAIN_S = 6 * DAYS_PER_YEAR * 86400
# S3 refuses multipart parts below 5 MiB (except the last) and uploads above 5 GiB in one PUT.
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_SIZE = 5 * 1024 ** 3
_RETAIN = re.compile(r"^\s*(\d+)\s*(y|d|h|m|s)\s*$")
_RETAIN_UNITS = {"y": DAYS_PER_YEAR * 86400, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    prefix: str  # "" or "some/prefix" (no leading or trailing slash)

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def parse_s3_url(url: str) -> S3Location:
    """``s3://bucket/prefix`` → S3Location; ValueError otherwise."""
    if not url.startswith("s3://"):
        raise ValueError("must be an s3://bucket/prefix URL")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise ValueError(f"{bucket!r} is not a valid S3 bucket name")
    return S3Location(bucket, prefix.strip("/"))


def parse_retain(value: object) -> float:
    """``6y``, ``2200d``, ``30s`` → seconds."""
    match = _RETAIN.match(value) if isinstance(value, str) else None
    if not match or int(match.group(1)) <= 0:
        raise ValueError("must be a positive period such as 6y, 2200d or 1h")
    return int(match.group(1)) * _RETAIN_UNITS[match.group(2)]


@dataclass(frozen=True, slots=True)
class ArchiveSettings:
    """``archive:`` — see the README's archive section for each key."""

    location: S3Location
    endpoint: str | None = None  # overrides AWS_ENDPOINT_URL
    region: str | None = None  # overrides AWS_REGION / AWS_DEFAULT_REGION
    credentials: str = "env"
    mode: LockMode = "compliance"
    retain_s: float = MIN_RETAIN_S
    allow_short_retention: bool = False
    parallel: int = 4
    part_size: int = 16 * 1024 * 1024
    interval_s: float = 10.0  # how often the uploader looks for newly sealed files
    max_delay_s: float = 3600.0  # a sealed segment not archived by then: alert, not ready

    @property
    def retain_days(self) -> float:
        return self.retain_s / 86400.0


def parse_archive(section: Section) -> ArchiveSettings:
    section.only("url", "endpoint", "region", "credentials", "mode", "retain",
                 "allow_short_retention", "upload", "max_delay")
    try:
        location = parse_s3_url(section.text("url"))
    except ValueError as e:
        raise section.error("url", str(e)) from e
    try:
        retain_s = parse_retain(section.data.get("retain", "6y"))
    except ValueError as e:
        raise section.error("retain", str(e)) from e
    allow_short = section.flag("allow_short_retention", False)
    if retain_s < MIN_RETAIN_S and not allow_short:
        raise section.error("retain", (
            "is shorter than the six years HIPAA requires documentation to be kept; "
            "set allow_short_retention: true only for tests"))
    parallel, part_size, interval_s = _upload(section)
    return ArchiveSettings(
        location=location,
        endpoint=section.optional_text("endpoint"),
        region=section.optional_text("region"),
        credentials=section.choice("credentials", CREDENTIAL_SOURCES, "env"),
        mode=section.choice("mode", LOCK_MODES, "compliance"),  # type: ignore[arg-type]
        retain_s=retain_s,
        allow_short_retention=allow_short,
        parallel=parallel,
        part_size=part_size,
        interval_s=interval_s,
        max_delay_s=section.duration("max_delay", 3600.0),
    )


def _upload(section: Section) -> tuple[int, int, float]:
    if "upload" not in section.data:
        return 4, 16 * 1024 * 1024, 10.0
    upload = section.child("upload")
    upload.only("parallel", "part_size", "interval")
    part_size = upload.size("part_size", 16 * 1024 * 1024)
    if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise upload.error("part_size", "must be between 5MiB and 5GiB (S3's part limits)")
    interval = upload.duration("interval", 10.0)
    if interval <= 0:
        raise upload.error("interval", "must be positive")
    return upload.integer("parallel", 4, minimum=1), part_size, interval
