"""Archive benchmark: upload throughput to a local S3 server, then verify-from-archive rate.

Builds a journal of ``--entries`` realistic statement entries (default 1M; written with
``durability: write`` and ``append_later`` so building takes seconds), starts a moto
server process (or uses ``--endpoint`` with credentials from the environment), uploads
every sealed segment with the gateway's own uploader (``upload.parallel`` threads, Object
Lock PUTs with checksums) and reports MB/s and segments/s, then runs
``verify_archive`` (what ``phigate journal verify s3://…`` runs) and reports entries/s.
Run: ``.venv/bin/python bench/archive.py [--entries N] [--segment-mib M] [--parallel P]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.archive import s3  # noqa: E402
from gateway.archive.settings import ArchiveSettings, parse_s3_url  # noqa: E402
from gateway.archive.uploader import Archiver  # noqa: E402
from gateway.archive.verify import verify_archive  # noqa: E402
from gateway.journal import Journal, JournalSettings  # noqa: E402
from gateway.journal.keys import generate, load_public  # noqa: E402
from gateway.journal.segments import is_sealed, list_segments  # noqa: E402
from tests.archive.s3servers import CREDENTIALS, start_moto  # noqa: E402


async def build(settings: JournalSettings, entries: int) -> None:
    journal = await Journal.open(settings)
    try:
        for n in range(entries):
            journal.append_later("statement", {
                "session": f"s{n % 64}", "user": "alice", "n": n, "protocol": "extended",
                "sql": "SELECT mrn, last_name FROM patients WHERE id = $1",
                "params": ["sha256:" + "ab" * 16], "decision": "allow"})
            if n % 5000 == 4999:
                await journal.append("heartbeat", {"n": n})  # lets the writer drain
    finally:
        await journal.close()


async def upload(archive: ArchiveSettings, settings: JournalSettings) -> tuple[float, int]:
    journal = await Journal.open(settings)
    try:
        archiver = Archiver(archive, journal)
        await archiver.start()
        started = time.perf_counter()
        await archiver.run_once()
        seconds = time.perf_counter() - started
        await archiver.close()
        return seconds, archiver.uploaded
    finally:
        await journal.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--segment-mib", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--endpoint", help="an S3 endpoint instead of a local moto server")
    parser.add_argument("--bucket", help="with --endpoint: an Object Lock bucket")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="phigate-bench-archive-"))
    server = None
    if args.endpoint is None:
        server = start_moto(root / "moto.log")
        os.environ.update(CREDENTIALS)
        endpoint, bucket = server.endpoint, server.bucket()
    else:
        endpoint, bucket = args.endpoint, args.bucket
    try:
        private, public = generate(root / "journal")
        settings = JournalSettings(dir=root / "j", signing_key=private, durability="write",
                                   segment_max_bytes=args.segment_mib * 1024 * 1024,
                                   immutable=False)
        started = time.perf_counter()
        asyncio.run(build(settings, args.entries))
        print(f"built {args.entries:,} entries in {time.perf_counter() - started:.1f} s")
        archive = ArchiveSettings(location=parse_s3_url(f"s3://{bucket}/bench"),
                                  endpoint=endpoint, retain_s=86400, allow_short_retention=True,
                                  parallel=args.parallel)
        sealed = [s for s in list_segments(settings.dir) if is_sealed(s.path)]
        size = sum(s.path.stat().st_size for s in sealed)
        seconds, objects = asyncio.run(upload(archive, settings))
        print(f"upload: {objects} objects ({len(sealed)} segments, {size / 1e6:.0f} MB) in "
              f"{seconds:.2f} s: {size / 1e6 / seconds:.1f} MB/s, "
              f"{len(sealed) / seconds:.1f} segments/s (parallel {args.parallel})")
        client = s3.make_client(archive, pool=args.parallel + 2)
        report = verify_archive(client, archive.location, load_public(public),
                                parallel=args.parallel, required_retain_s=3600)
        print(f"verify from archive: {'OK' if report.ok else 'FAILED'}: {report.entries:,} "
              f"entries in {report.seconds:.2f} s: {report.entries_per_s:,.0f} entries/s "
              f"({report.bytes / 1e6 / report.seconds:.1f} MB/s)")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
