"""The S3 client: Object Lock PUTs that never overwrite, HEADs, versioned reads.

Everything here blocks (botocore): the uploader and the verifier call it from
worker threads. The client follows the SDK's conventions (the standard
credential chain, ``AWS_ENDPOINT_URL``, ``AWS_REGION``) with ``archive.endpoint``
and ``archive.region`` overriding them. Every PUT carries Content-MD5 and
x-amz-checksum-sha256 (Object Lock PUTs must carry a checksum the server
verifies) and ``If-None-Match: *`` so an existing object is never replaced; we
turn off botocore's default CRC32 (>= 1.36), which some S3-compatible stores
reject.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from .errors import ArchiveConflict, ArchiveUnavailable, ArchiveUnusable
from .settings import ArchiveSettings, S3Location

SHA256_META = "sha256"  # user metadata: our own digest, whatever checksums the store keeps
# Which botocore credential providers each ``archive.credentials`` value keeps.
_PROVIDERS = {"env": ("env",), "file": ("shared-credentials-file", "config-file"),
              "instance": ("container-role", "iam-role")}
# Where each source looks, for the refusal when it has nothing.
_LOOKS_AT = {
    "env": "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN",
    "file": "static keys in the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, default "
            "~/.aws/credentials) or the config file (AWS_CONFIG_FILE), profile AWS_PROFILE",
    "instance": "the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or "
                "_FULL_URI) or the EC2 instance metadata service",
}
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a HEAD (or PUT) says about one object version."""

    key: str
    version_id: str | None
    size: int
    sha256: str | None
    mode: str | None  # COMPLIANCE / GOVERNANCE / None
    retain_until: dt.datetime | None


@dataclass(frozen=True, slots=True)
class VersionEntry:
    key: str
    version_id: str
    is_latest: bool
    deleted: bool  # a delete marker
    size: int
    modified: dt.datetime


def make_client(settings: ArchiveSettings | None, *, endpoint: str | None = None,
                region: str | None = None, pool: int = 10) -> Any:
    """A botocore S3 client; ``settings`` None = an auditor's plain SDK environment."""
    session = botocore.session.get_session()
    if settings is not None and settings.credentials in _PROVIDERS:
        _keep_providers(session, _PROVIDERS[settings.credentials])
    endpoint = (settings.endpoint if settings else None) or endpoint
    region = (settings.region if settings else None) or region
    custom = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get(
        "AWS_ENDPOINT_URL")
    config = Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
        max_pool_connections=pool,
        # A local or on-premises endpoint rarely resolves bucket.host names.
        s3={"addressing_style": "path" if custom else "auto"},
    )
    return session.create_client("s3", endpoint_url=endpoint,
                                 region_name=region or session.get_config_variable("region")
                                 or "us-east-1", config=config)


def _keep_providers(session: botocore.session.Session, names: tuple[str, ...]) -> None:
    resolver = session.get_component("credential_provider")
    for provider in list(resolver.providers):
        if provider.METHOD not in names:
            resolver.remove(provider.METHOD)


def retain_until(settings: ArchiveSettings, now: dt.datetime | None = None) -> dt.datetime:
    start = now or dt.datetime.now(dt.UTC)
    # Whole seconds: stores echo the date back at second precision.
    return (start + dt.timedelta(seconds=settings.retain_s)).replace(microsecond=0)


def check_bucket(client: Any, location: S3Location, credentials: str = "env") -> None:
    """Object Lock and versioning must be on; ArchiveUnusable says which is not."""
    try:
        versioning = client.get_bucket_versioning(Bucket=location.bucket)
        lock = client.get_object_lock_configuration(Bucket=location.bucket)
    except NoCredentialsError as e:
        raise ArchiveUnusable(f"no AWS credentials found (archive.credentials: {credentials} "
                              f"reads only {_LOOKS_AT.get(credentials, credentials)})") from e
    except ClientError as e:
        code = _code(e)
        if code in ("ObjectLockConfigurationNotFoundError", "ObjectLockConfigurationNotFound"):
            raise ArchiveUnusable(f"bucket {location.bucket} does not have Object Lock "
                                  "enabled (it can only be enabled when the bucket is "
                                  "created)") from e
        raise ArchiveUnusable(f"bucket {location.bucket}: {code}: {_message(e)}") from e
    except BotoCoreError as e:
        raise ArchiveUnusable(f"archive {location} is unreachable: {e}") from e
    if versioning.get("Status") != "Enabled":
        raise ArchiveUnusable(f"bucket {location.bucket} does not have versioning enabled "
                              f"(status: {versioning.get('Status', 'never enabled')})")
    enabled = lock.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
    if enabled != "Enabled":
        raise ArchiveUnusable(f"bucket {location.bucket} does not have Object Lock enabled")


def put_locked(client: Any, settings: ArchiveSettings, key: str, data: bytes,
               until: dt.datetime) -> ObjectInfo:
    """Store ``data`` under ``key``, locked until ``until``; never replaces an object.

    If an identical object is already there (an upload interrupted after the
    PUT), that one is returned; a different one raises ArchiveConflict.
    """
    digest = hashlib.sha256(data)
    try:
        if len(data) > settings.part_size:
            response = _multipart(client, settings, key, data, until, digest.hexdigest())
        else:
            response = client.put_object(
                Bucket=settings.location.bucket, Key=key, Body=data, IfNoneMatch="*",
                ContentMD5=_b64(hashlib.md5(data).digest()),
                ChecksumSHA256=_b64(digest.digest()),
                ObjectLockMode=settings.mode.upper(), ObjectLockRetainUntilDate=until,
                Metadata={SHA256_META: digest.hexdigest()})
    except ClientError as e:
        if _code(e) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            return _existing(client, settings.location.bucket, key, digest.hexdigest())
        raise ArchiveUnavailable(f"PUT {key}: {_code(e)}: {_message(e)}") from e
    except BotoCoreError as e:
        raise ArchiveUnavailable(f"PUT {key}: {e}") from e
    return ObjectInfo(key, response.get("VersionId"), len(data), digest.hexdigest(),
                      settings.mode.upper(), until)


def _multipart(client: Any, settings: ArchiveSettings, key: str, data: bytes,
               until: dt.datetime, sha256: str) -> dict[str, Any]:
    bucket = settings.location.bucket
    upload = client.create_multipart_upload(
        Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256",
        ObjectLockMode=settings.mode.upper(), ObjectLockRetainUntilDate=until,
        Metadata={SHA256_META: sha256})
    upload_id = upload["UploadId"]
    try:
        parts = []
        view = memoryview(data)
        for number, start in enumerate(range(0, len(data), settings.part_size), start=1):
            part = bytes(view[start:start + settings.part_size])
            checksum = _b64(hashlib.sha256(part).digest())
            answer = client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=part,
                ContentMD5=_b64(hashlib.md5(part).digest()), ChecksumSHA256=checksum)
            parts.append({"PartNumber": number, "ETag": answer["ETag"],
                          "ChecksumSHA256": checksum})
        done = dict(client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, IfNoneMatch="*",
            MultipartUpload={"Parts": parts}))
    except BaseException:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError):
            pass  # the bucket's lifecycle rule for incomplete uploads cleans up
        raise
    version = done.get("VersionId")
    if client.head_object(Bucket=bucket, Key=key, VersionId=version).get(
            "ObjectLockMode") is None:
        # Some stores drop CreateMultipartUpload's lock headers: lock the version itself.
        client.put_object_retention(
            Bucket=bucket, Key=key, VersionId=version, ChecksumAlgorithm="SHA256",
            Retention={"Mode": settings.mode.upper(), "RetainUntilDate": until})
    return done


def _existing(client: Any, bucket: str, key: str, sha256: str) -> ObjectInfo:
    info = head(client, bucket, key)
    if info is None or info.sha256 != sha256:
        raise ArchiveConflict(f"{key} already exists in the archive with different content "
                              "(it is never overwritten)")
    return info


def head(client: Any, bucket: str, key: str, version_id: str | None = None
         ) -> ObjectInfo | None:
    """The object's (or that version's) metadata; None if there is none."""
    extra = {"VersionId": version_id} if version_id else {}
    try:
        answer = client.head_object(Bucket=bucket, Key=key, **extra)
    except ClientError as e:
        if _code(e) in ("404", "NoSuchKey", "NotFound", "NoSuchVersion", "405"):
            return None
        raise ArchiveUnavailable(f"HEAD {key}: {_code(e)}: {_message(e)}") from e
    except BotoCoreError as e:
        raise ArchiveUnavailable(f"HEAD {key}: {e}") from e
    return ObjectInfo(key, answer.get("VersionId"), int(answer.get("ContentLength", 0)),
                      answer.get("Metadata", {}).get(SHA256_META),
                      answer.get("ObjectLockMode"), answer.get("ObjectLockRetainUntilDate"))


def get_chunks(client: Any, bucket: str, key: str, version_id: str | None,
               chunk: int = 1024 * 1024) -> Iterator[bytes]:
    """The bytes of one object version, in pieces (bounded memory)."""
    extra = {"VersionId": version_id} if version_id else {}
    try:
        body = client.get_object(Bucket=bucket, Key=key, **extra)["Body"]
        try:
            yield from body.iter_chunks(chunk)
        finally:
            body.close()
    except ClientError as e:
        raise ArchiveUnavailable(f"GET {key}: {_code(e)}: {_message(e)}") from e
    except BotoCoreError as e:
        raise ArchiveUnavailable(f"GET {key}: {e}") from e


def list_versions(client: Any, bucket: str, prefix: str) -> Iterator[VersionEntry]:
    """Every version and delete marker under ``prefix``, page by page."""
    try:
        pages = client.get_paginator("list_object_versions").paginate(
            Bucket=bucket, Prefix=prefix)
        for page in pages:
            for v in page.get("Versions", []):
                yield VersionEntry(v["Key"], v["VersionId"], v["IsLatest"], False,
                                   int(v.get("Size", 0)), v["LastModified"])
            for m in page.get("DeleteMarkers", []):
                yield VersionEntry(m["Key"], m["VersionId"], m["IsLatest"], True, 0,
                                   m["LastModified"])
    except ClientError as e:
        raise ArchiveUnavailable(f"listing {prefix}: {_code(e)}: {_message(e)}") from e
    except BotoCoreError as e:
        raise ArchiveUnavailable(f"listing {prefix}: {e}") from e


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", "unknown"))


def _message(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Message", ""))
