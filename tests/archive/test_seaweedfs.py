"""COMPLIANCE mode on a store that enforces it (SeaweedFS): what an attacker with the
bucket's credentials still cannot do to archived evidence, and what verify reports.

moto wrongly allows shortening COMPLIANCE retention, downgrading it to GOVERNANCE and
suspending versioning; SeaweedFS refuses all three, and deleting a locked version.
Overwriting a key only stacks a new version on the locked original, which
``phigate journal verify s3://…`` reports.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from gateway.archive import s3
from gateway.archive.settings import ArchiveSettings, parse_s3_url
from gateway.archive.uploader import Archiver
from gateway.journal import Journal, JournalSettings
from gateway.journal.keys import generate
from tests.archive.s3servers import S3Server
from tests.archive.test_upload import phigate


@pytest.fixture
def archived(seaweedfs: S3Server, tmp_path: Path) -> tuple[str, Path, list[str]]:
    """A small journal archived to a fresh SeaweedFS bucket by the gateway's own uploader."""
    private, public = generate(tmp_path / "keys" / "journal")
    settings = JournalSettings(dir=tmp_path / "journal", signing_key=private,
                               segment_max_bytes=4096, immutable=False)
    bucket = seaweedfs.bucket()
    archive = ArchiveSettings(location=parse_s3_url(f"s3://{bucket}/gw"),
                              endpoint=seaweedfs.endpoint, retain_s=3600,
                              allow_short_retention=True)
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in seaweedfs.env().items() if k.startswith("AWS_")})

    async def build() -> None:
        journal = await Journal.open(settings)
        for i in range(40):
            await journal.append("statement", {"sql": f"SELECT {i}", "pad": "x" * 80})
        archiver = Archiver(archive, journal)
        await archiver.start()
        assert await archiver.run_once() >= 2
        await archiver.close()
        await journal.close()

    try:
        asyncio.run(build())
    finally:
        os.environ.clear()
        os.environ.update(saved)
    keys = [v.key for v in s3.list_versions(seaweedfs.client(), bucket, "gw/segments/")]
    return bucket, public, sorted(keys)


def test_compliance_lock_holds_on_seaweedfs(seaweedfs: S3Server,
                                            archived: tuple[str, Path, list[str]]) -> None:
    bucket, _, keys = archived
    client = seaweedfs.client()
    key = keys[0]
    head = client.head_object(Bucket=bucket, Key=key)
    version, until = head["VersionId"], head["ObjectLockRetainUntilDate"]
    assert head["ObjectLockMode"] == "COMPLIANCE"
    attempts = {
        "delete": lambda: client.delete_object(Bucket=bucket, Key=key, VersionId=version),
        "shorten": lambda: client.put_object_retention(
            Bucket=bucket, Key=key, VersionId=version, ChecksumAlgorithm="SHA256",
            Retention={"Mode": "COMPLIANCE",
                       "RetainUntilDate": dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)}),
        "downgrade": lambda: client.put_object_retention(
            Bucket=bucket, Key=key, VersionId=version, ChecksumAlgorithm="SHA256",
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until}),
        "suspend versioning": lambda: client.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": "Suspended"}),
        "overwrite": lambda: client.put_object(Bucket=bucket, Key=key, Body=b"x",
                                               IfNoneMatch="*"),
    }
    for name, attempt in attempts.items():
        with pytest.raises(ClientError):
            attempt()
            pytest.fail(f"{name} of a COMPLIANCE-locked version was allowed")
    after = client.head_object(Bucket=bucket, Key=key, VersionId=version)
    assert after["ObjectLockMode"] == "COMPLIANCE" and after["ObjectLockRetainUntilDate"] == until


def test_verify_on_seaweedfs_reports_overwrite_and_deletion(
        seaweedfs: S3Server, archived: tuple[str, Path, list[str]]) -> None:
    bucket, public, keys = archived
    url = f"s3://{bucket}/gw"
    env = seaweedfs.env()
    clean = phigate("journal", "verify", url, "--key", str(public), "--retain", "1h", env=env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    client = seaweedfs.client()
    client.put_object(Bucket=bucket, Key=keys[0], Body=b"forged\n")  # no If-None-Match
    client.delete_object(Bucket=bucket, Key=keys[1])  # a delete marker, the version stays
    result = phigate("journal", "verify", url, "--key", str(public), "--retain", "1h", env=env)
    assert result.returncode == 1
    assert f"{keys[0]}: overwritten" in result.stdout
    assert f"{keys[1]}: deleted" in result.stdout
    assert "TAMPERED" not in result.stdout  # the locked originals still verify
