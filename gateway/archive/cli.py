"""The archive part of ``phigate journal``: verify from the archive, compare, restore, prune.

``phigate journal verify s3://bucket/prefix --key journal.pub`` verifies from the
archive alone with nothing but the auditor's SDK environment (credentials,
``AWS_ENDPOINT_URL``); ``journal verify DIR --against s3://…`` also compares the
local journal with its archive (``--restore`` brings back local segments that
are missing, from the recorded versions); ``journal prune`` refuses to drop a
segment whose archive copy is not confirmed. Installed as an ``extend``
callback of ``gateway.journal.cli.register``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from ..journal import segments
from ..journal.errors import KeyFileError
from ..journal.keys import load_public
from . import s3
from .errors import ArchiveError
from .prune_guard import guard_for
from .settings import S3Location, parse_retain, parse_s3_url
from .state import file_sha256
from .verify import ArchiveReport, Finding, verify_archive

Handler = Callable[[argparse.Namespace], int]
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def extend_journal_commands(name: str, parser: argparse.ArgumentParser) -> None:
    inner: Handler = parser.get_default("func")
    if name == "journal verify":
        parser.add_argument("--against", metavar="S3URL",
                            help="also compare the local journal with its archive")
        parser.add_argument("--restore", action="store_true",
                            help="with --against: copy back local segments that are missing")
        parser.add_argument("--endpoint", help="S3 endpoint (default: AWS_ENDPOINT_URL)")
        parser.add_argument("--region", help="S3 region (default: the SDK's)")
        parser.add_argument("--parallel", type=int, default=4, help="parallel downloads")
        parser.add_argument("--retain", default="6y",
                            help="retention every archived object must have (default 6y)")
        parser.set_defaults(func=partial(_verify, inner))
    elif name == "journal prune":
        parser.set_defaults(func=partial(_prune, inner))


def _s3_argument(value: object) -> str | None:
    """argparse made the DIR a Path, which folds ``s3://`` to ``s3:/``."""
    text = str(value)
    return "s3://" + text[len("s3:/"):].lstrip("/") if text.startswith("s3:/") else None


def _verify(inner: Handler, args: argparse.Namespace) -> int:
    url = _s3_argument(args.dir)
    if url is None and args.against is None:
        return inner(args)
    try:
        location = parse_s3_url(url or args.against)
        required = parse_retain(args.retain)
        key = load_public(args.key)
    except (ValueError, KeyFileError, OSError) as e:
        print(f"phigate: {e}", file=sys.stderr)
        return EXIT_USAGE
    local = EXIT_OK if url is not None else inner(args)
    client = s3.make_client(None, endpoint=args.endpoint, region=args.region,
                            pool=max(args.parallel, 1) + 2)
    try:
        report = verify_archive(client, location, key, parallel=max(args.parallel, 1),
                                required_retain_s=required)
        restored = []
        if url is None:
            restored = _compare(client, location, Path(args.dir), report, restore=args.restore)
    except ArchiveError as e:
        print(f"phigate: archive {location}: {e.message}", file=sys.stderr)
        return EXIT_USAGE
    print(report.summary())
    for name in restored:
        print(f"restored {name} from the archive")
    return EXIT_OK if report.ok and local == EXIT_OK else EXIT_FAILED


def _compare(client: Any, location: S3Location, directory: Path, report: ArchiveReport, *,
             restore: bool) -> list[str]:
    """Local sealed segments must be archived unchanged; archived ones must exist locally
    (or be restored). Problems become findings."""
    local = {s.name: s for s in segments.list_segments(directory)}
    restored = []
    for name, segment in local.items():
        key = location.key(f"segments/{name}")
        held = report.objects.get(key)
        if held is None:
            if segments.is_sealed(segment.path):
                report.findings.append(Finding(key, "sealed locally but not in the archive"))
            continue
        if held[1] != file_sha256(segment.path):
            report.findings.append(Finding(key, "differs from the local segment " + name))
    for key, (version, _) in sorted(report.objects.items()):
        name = key.rsplit("/", 1)[-1]
        if "/segments/" not in f"/{key}" or name in local:
            continue
        if not restore:
            report.findings.append(Finding(key, (
                f"missing locally from {directory} (restore it with --restore)")))
            continue
        data = b"".join(s3.get_chunks(client, location.bucket, key, version))
        segments.atomic_write(directory / name, data, segments.SEALED_MODE)
        restored.append(name)
    return restored



def _prune(inner: Handler, args: argparse.Namespace) -> int:
    try:
        args.prune_guard = guard_for(Path(args.dir))
    except (ValueError, OSError, KeyError) as e:
        print(f"phigate: {args.dir}: archive-state.json is unreadable ({e}); refusing to "
              "prune a journal whose archive copies cannot be confirmed", file=sys.stderr)
        return EXIT_USAGE
    return inner(args)
