"""Archiving through the installed gateway: locked uploads, ``archived`` entries, refusals.

Against a real moto server process: sealed segments, checkpoints and finished
recordings reach the bucket with COMPLIANCE retention and a verified checksum;
the gateway refuses to start on a bucket without Object Lock; a locked
version cannot be deleted or overwritten; the retention guard is a config error.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError

from gateway.recording.keys import generate_key_file
from tests.archive.conftest import archive_overrides
from tests.archive.s3servers import S3Server
from tests.e2e.harness import PHIGATE, REPO, GatewayProcess, psql


def phigate(*args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PHIGATE), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=env)


def entries(gateway: GatewayProcess, kind: str) -> list[dict[str, Any]]:
    result = phigate("journal", "show", str(gateway.journal_dir), "--json", "--type", kind)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def busy(gateway: GatewayProcess, statements: int = 40) -> None:
    """Enough statements to fill and seal a few 4 KiB segments."""
    script = "".join(f"SELECT {i}, 'padding to fill the segment quickly';\n"
                     for i in range(statements))
    result = psql(gateway, stdin=script)
    assert result.returncode == 0, result.stderr


def sealed(gateway: GatewayProcess) -> list[Path]:
    return [p for p in sorted(gateway.journal_dir.glob("segment-*.jsonl"))
            if p.stat().st_mode & 0o222 == 0]


def test_sealed_segments_checkpoints_and_recordings_are_archived_locked(
        moto: S3Server, archived_gateway: Callable[..., GatewayProcess], tmp_path: Path) -> None:
    bucket = moto.bucket()
    key = tmp_path / "recordings.key"
    generate_key_file(key)
    overrides = archive_overrides(moto.endpoint, bucket)
    overrides["recordings"] = {"dir": str(tmp_path / "recordings"), "key_file": str(key),
                               "flush_interval": "100ms"}
    gateway = archived_gateway(moto, overrides)
    busy(gateway)
    recording = next((tmp_path / "recordings").glob("*/*.phirec"))
    assert wait_for(lambda: {e["kind"] for e in entries(gateway, "archived")}
                    >= {"segment", "checkpoint", "recording"}), gateway.log()
    shipped = {f"gw/segments/{p.name}" for p in sealed(gateway)}
    assert wait_for(lambda: shipped <= {e["key"] for e in entries(gateway, "archived")})
    assert gateway.stop() == 0

    client = moto.client()
    archived = entries(gateway, "archived")
    by_key = {e["key"]: e for e in archived}
    assert len(by_key) == len(archived), "an object was journaled twice"
    assert shipped <= set(by_key)
    assert f"gw/recordings/{recording.parent.name}/{recording.name}" in by_key
    for entry in archived:
        head = client.head_object(Bucket=bucket, Key=entry["key"], VersionId=entry["version_id"])
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"].isoformat().startswith(
            entry["retain_until"][:16])
        assert head["Metadata"]["sha256"] == entry["sha256"]
        assert head["ContentLength"] == entry["size"]
        # COMPLIANCE: the locked version cannot be deleted, even by the bucket's owner.
        with pytest.raises(ClientError, match="AccessDenied"):
            client.delete_object(Bucket=bucket, Key=entry["key"], VersionId=entry["version_id"])
        with pytest.raises(ClientError, match="PreconditionFailed"):
            client.put_object(Bucket=bucket, Key=entry["key"], Body=b"forged", IfNoneMatch="*")
    # The journal still verifies with the archive entries in it.
    verify = phigate("journal", "verify", str(gateway.journal_dir), "--key",
                     str(gateway.public_key))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_gateway_refuses_a_bucket_without_object_lock(
        moto: S3Server, archived_gateway: Callable[..., GatewayProcess]) -> None:
    bucket = moto.bucket(lock=False)
    gateway = archived_gateway(moto, archive_overrides(moto.endpoint, bucket), start=False)
    with pytest.raises(RuntimeError, match="exited 4") as failed:
        gateway.start()
    assert "does not have Object Lock enabled" in str(failed.value)
    [refused] = entries(gateway, "archive_refused")
    assert "Object Lock" in refused["reason"]


def test_gateway_refuses_a_missing_bucket(
        moto: S3Server, archived_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = archived_gateway(moto, archive_overrides(moto.endpoint, "no-such-bucket"),
                               start=False)
    with pytest.raises(RuntimeError, match="exited 4") as failed:
        gateway.start()
    assert "NoSuchBucket" in str(failed.value)


@pytest.mark.parametrize(("archive", "message"), [
    ({"retain": "5y"}, "shorter than the six years"),
    ({"retain": "2000d"}, "shorter than the six years"),
    ({"url": "https://bucket/prefix"}, "must be an s3://bucket/prefix URL"),
    ({"mode": "legal"}, "must be one of: compliance, governance"),
    ({"upload": {"part_size": "1MiB"}}, "between 5MiB and 5GiB"),
    ({"colour": "blue"}, "colour"),
])
def test_archive_config_errors(tmp_path: Path, archive: dict[str, Any], message: str) -> None:
    config = {"databases": {"clinic": {"host": "127.0.0.1", "user": "x"}},
              "archive": {"url": "s3://evidence/gw", **archive}}
    path = tmp_path / "phigate.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = phigate("check-config", "-c", str(path))
    assert result.returncode == 2, result.stdout
    assert message in result.stderr and "archive" in result.stderr


def test_short_retention_only_when_allowed_explicitly(tmp_path: Path) -> None:
    config = {"databases": {"clinic": {"host": "127.0.0.1", "user": "x"}},
              "archive": {"url": "s3://evidence/gw", "retain": "1d",
                          "allow_short_retention": True, "mode": "governance",
                          "credentials": "file", "region": "eu-west-1",
                          "upload": {"parallel": 8, "part_size": "64MiB"}}}
    path = tmp_path / "phigate.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = phigate("check-config", "-c", str(path))
    assert result.returncode == 0, result.stderr
