"""Verifying from the archive alone, comparing and restoring, and the prune guard.

Through the installed ``phigate``, with nothing but an auditor's SDK environment
(credentials and ``AWS_ENDPOINT_URL``) pointing at a real moto server process.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from gateway.archive.settings import ArchiveSettings, parse_s3_url
from gateway.archive.uploader import Archiver
from gateway.archive.verify import verify_archive
from gateway.journal import Journal, JournalSettings
from gateway.journal.keys import generate, load_public
from gateway.journal.segments import list_segments, remove_sealed
from tests.archive.conftest import archive_overrides
from tests.archive.s3servers import S3Server
from tests.archive.test_upload import busy, entries, phigate, sealed, wait_for
from tests.e2e.harness import GatewayProcess

_DAY_NS = 86_400 * 1_000_000_000


def archived_journal(moto: S3Server, start: Callable[..., GatewayProcess]
                     ) -> tuple[GatewayProcess, str]:
    bucket = moto.bucket()
    gateway = start(moto, archive_overrides(moto.endpoint, bucket))
    busy(gateway)
    assert wait_for(lambda: len([e for e in entries(gateway, "archived")
                                 if e["kind"] == "segment"]) >= 3), gateway.log()
    assert gateway.stop() == 0
    return gateway, f"s3://{bucket}/gw"


def test_verify_from_the_archive_alone_then_compare_and_restore(
        moto: S3Server, archived_gateway: Callable[..., GatewayProcess]) -> None:
    gateway, url = archived_journal(moto, archived_gateway)
    env = moto.env()
    alone = phigate("journal", "verify", url, "--key", str(gateway.public_key), "--retain",
                    "1d", env=env)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert alone.stdout.startswith(f"OK: archive {url}") and "checkpoints" in alone.stdout
    against = phigate("journal", "verify", str(gateway.journal_dir), "--key",
                      str(gateway.public_key), "--against", url, "--retain", "1d", env=env)
    assert against.returncode == 0, against.stdout + against.stderr

    lost = sealed(gateway)[1]
    remove_sealed(lost)
    local = phigate("journal", "verify", str(gateway.journal_dir), "--key",
                    str(gateway.public_key), "--against", url, "--retain", "1d", env=env)
    assert local.returncode == 1
    assert f"{lost.name}: missing locally" in local.stdout
    restored = phigate("journal", "verify", str(gateway.journal_dir), "--key",
                       str(gateway.public_key), "--against", url, "--retain", "1d",
                       "--restore", env=env)
    assert f"restored {lost.name} from the archive" in restored.stdout
    again = phigate("journal", "verify", str(gateway.journal_dir), "--key",
                    str(gateway.public_key))
    assert again.returncode == 0, again.stdout
    assert lost.stat().st_mode & 0o222 == 0  # restored sealed


def test_verify_reports_short_retention_overwrites_and_deletions(
        moto: S3Server, archived_gateway: Callable[..., GatewayProcess]) -> None:
    gateway, url = archived_journal(moto, archived_gateway)
    env = moto.env()
    short = phigate("journal", "verify", url, "--key", str(gateway.public_key), env=env)
    assert short.returncode == 1
    assert "is shorter than required (2192 days" in short.stdout

    # moto lets a plain PUT stack a new version on a key and a DELETE hide one behind a
    # marker; the locked original stays, and versioning shows both.
    client, bucket = moto.client(), url.split("/")[2]
    first, second = (f"gw/segments/{p.name}" for p in sealed(gateway)[:2])
    client.put_object(Bucket=bucket, Key=first, Body=b"forged\n")
    client.delete_object(Bucket=bucket, Key=second)
    tampered = phigate("journal", "verify", url, "--key", str(gateway.public_key),
                       "--retain", "1d", env=env)
    assert tampered.returncode == 1
    assert f"{first}: overwritten: 2 versions" in tampered.stdout
    assert f"{second}: deleted (a delete marker hides it)" in tampered.stdout
    # The originals are still what is read: the chain itself verifies.
    assert "TAMPERED" not in tampered.stdout


def test_streamed_verify_is_the_same_whatever_the_read_block(
        moto: S3Server, archived_gateway: Callable[..., GatewayProcess]) -> None:
    """Lines cut across GET reads: same counts when intact, same line named when altered."""
    gateway, url = archived_journal(moto, archived_gateway)
    client, key = moto.client(), load_public(gateway.public_key)
    whole = verify_archive(client, parse_s3_url(url), key, required_retain_s=86400)
    assert whole.ok, whole.summary()
    cut = verify_archive(client, parse_s3_url(url), key, required_retain_s=86400, read_block=61)
    assert cut.ok and (cut.entries, cut.bytes) == (whole.entries, whole.bytes), cut.summary()

    # The same segments, the fourth line of the second one altered, in a bucket of their own.
    copy = moto.bucket(lock=False)
    client.put_bucket_versioning(Bucket=copy, VersioningConfiguration={"Status": "Enabled"})
    for n, path in enumerate(sealed(gateway)):
        data = path.read_bytes()
        if n == 1:
            lines = data.split(b"\n")
            lines[3] = lines[3].replace(b'"seq":', b'"seq": ', 1)
            data = b"\n".join(lines)
        client.put_object(Bucket=copy, Key=f"gw/segments/{path.name}", Body=data)
    failures = [verify_archive(client, parse_s3_url(f"s3://{copy}/gw"), key,
                               read_block=size).failure for size in (61, 1000, 1 << 20)]
    # The same line, whether the next line's prev was checked in the same read or the next.
    found = {(f.seq, f.file, f.line) for f in failures if f is not None}
    assert len(found) == 1 and None not in failures, failures
    [(_, file, line)] = found
    assert (file, line) == (f"gw/segments/{sealed(gateway)[1].name}", 4), failures


def test_verify_without_archive_access_is_a_usage_error(tmp_path: Path) -> None:
    _, public = generate(tmp_path / "k")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
           "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}
    result = phigate("journal", "verify", "s3://evidence/gw", "--key", str(public), env=env)
    assert result.returncode == 2
    assert "archive s3://evidence/gw" in result.stderr and "Traceback" not in result.stderr


def test_prune_never_drops_an_unarchived_segment(moto: S3Server, tmp_path: Path) -> None:
    private, _ = generate(tmp_path / "keys" / "journal")
    settings = JournalSettings(dir=tmp_path / "journal", signing_key=private,
                               segment_max_bytes=4096, immutable=False)
    archive = ArchiveSettings(location=parse_s3_url(f"s3://{moto.bucket()}/gw"),
                              endpoint=moto.endpoint, retain_s=86400,
                              allow_short_retention=True)
    old = time.time_ns() - 7 * 365 * _DAY_NS
    os.environ.update({k: v for k, v in moto.env().items() if k.startswith("AWS_")})

    async def build() -> None:
        journal = await Journal.open(settings, clock_ns=lambda: old)
        for i in range(60):
            await journal.append("statement", {"sql": f"SELECT {i}", "pad": "x" * 80})
        archiver = Archiver(archive, journal)
        await archiver.start()
        await archiver.run_once()
        await archiver.close()
        for i in range(60):  # sealed after the archiver ran: not archived
            await journal.append("statement", {"sql": f"SELECT {i}", "pad": "x" * 80})
        await journal.close()

    try:
        asyncio.run(build())
    finally:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL",
                     "AWS_REGION"):
            os.environ.pop(name, None)
    before = [s.name for s in list_segments(settings.dir)]
    result = phigate("journal", "prune", str(settings.dir), "--key", str(private),
                     env=moto.env())
    assert result.returncode == 1, result.stdout + result.stderr
    assert "not archived to" in result.stderr
    after = [s.name for s in list_segments(settings.dir)]
    removed = [name for name in before if name not in after]
    assert 0 < len(removed) < len(before) - 1
    assert removed == before[:len(removed)]  # oldest first: what remains is contiguous
