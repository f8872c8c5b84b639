"""``archive.credentials``: which of the SDK's credential sources the gateway may use.

Through the installed gateway against the moto server process: ``file`` takes
the shared credentials file (``AWS_SHARED_CREDENTIALS_FILE``) and ignores the
environment's keys; ``instance`` takes the instance metadata service (moto
serves the IMDSv2 protocol; ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` points the SDK
at it) and ignores keys in the environment; ``env`` ignores the file. A source
that holds no credentials refuses the start (exit 4) with a clear message.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.archive.conftest import archive_overrides
from tests.archive.s3servers import CREDENTIALS, S3Server
from tests.archive.test_upload import busy, entries, wait_for
from tests.e2e.harness import GatewayProcess

NOWHERE = "/nonexistent/phigate-test-aws"


def sdk_env(tmp_path: Path, *, keys: bool, file: bool, imds: str | None) -> dict[str, str]:
    """An AWS environment with exactly the credential sources asked for."""
    env = {"AWS_REGION": "us-east-1", "AWS_CONFIG_FILE": NOWHERE,
           "AWS_SHARED_CREDENTIALS_FILE": NOWHERE,
           # Without an endpoint, the metadata service is not asked at all.
           **({"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds} if imds
              else {"AWS_EC2_METADATA_DISABLED": "true"})}
    if keys:
        env |= {k: CREDENTIALS[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    if file:
        path = tmp_path / "aws-credentials"
        path.write_text(f"[default]\naws_access_key_id = {CREDENTIALS['AWS_ACCESS_KEY_ID']}\n"
                        f"aws_secret_access_key = {CREDENTIALS['AWS_SECRET_ACCESS_KEY']}\n",
                        encoding="utf-8")
        env["AWS_SHARED_CREDENTIALS_FILE"] = str(path)
    return env


@pytest.mark.parametrize("source", ["file", "instance"])
def test_credentials_from_the_file_or_the_instance(
        moto: S3Server, archived_gateway: Callable[..., GatewayProcess], tmp_path: Path,
        source: str) -> None:
    bucket = moto.bucket()
    env = sdk_env(tmp_path, keys=False, file=source == "file",
                  imds=moto.endpoint if source == "instance" else None)
    gateway = archived_gateway(moto, archive_overrides(moto.endpoint, bucket,
                                                       credentials=source), aws_env=env)
    busy(gateway)
    assert wait_for(lambda: any(e["kind"] == "segment" for e in entries(gateway, "archived"))
                    ), gateway.log()
    assert gateway.stop() == 0
    listed = moto.client().list_object_versions(Bucket=bucket, Prefix="gw/segments/")
    assert listed.get("Versions")


@pytest.mark.parametrize(("source", "has"), [
    ("file", {"keys": True, "file": False, "imds": None}),  # keys in the environment only
    ("env", {"keys": False, "file": True, "imds": None}),  # a credentials file only
    ("instance", {"keys": True, "file": True, "imds": None}),  # no metadata service
])
def test_a_source_without_credentials_refuses_the_start(
        moto: S3Server, archived_gateway: Callable[..., GatewayProcess], tmp_path: Path,
        source: str, has: dict[str, object]) -> None:
    env = sdk_env(tmp_path, **has)  # type: ignore[arg-type]
    gateway = archived_gateway(moto, archive_overrides(moto.endpoint, moto.bucket(),
                                                       credentials=source),
                               aws_env=env, start=False)
    with pytest.raises(RuntimeError, match="exited 4") as failed:
        gateway.start()
    assert f"no AWS credentials found (archive.credentials: {source}" in str(failed.value)
