"""The recordings master key: 32 random bytes, base64 in a file (0600) or an env variable.

The master key only wraps per-session data keys (see ``format``), so losing a
recording file's data key exposes one session, and rotating the master key
needs no re-encryption of old sessions as long as the old key is kept.
``phigate keygen --recording-key PATH`` writes a key; the gateway's recorder
and the replay/verify commands load it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..secretfile import write_new_secret
from ..settings.config import RecordingSettings
from .errors import RecordingKeyError

log = logging.getLogger("phigate.recording")

KEY_BYTES = 32  # AES-256
_KEY_ID_INFO = b"phigate-recording-key-id-v1"


@dataclass(frozen=True, slots=True)
class MasterKey:
    """The key and a short public fingerprint, so a wrong key can be named without a guess."""

    value: bytes = field(repr=False)
    key_id: str = ""

    @classmethod
    def from_bytes(cls, value: bytes) -> MasterKey:
        if len(value) != KEY_BYTES:
            raise RecordingKeyError(f"a recording key is {KEY_BYTES} bytes, not {len(value)}")
        return cls(value, key_id_of(value))


def key_id_of(value: bytes) -> str:
    return hashlib.sha256(_KEY_ID_INFO + value).hexdigest()[:16]


def parse_key(text: bytes | str, source: str) -> MasterKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise RecordingKeyError(f"{source} is not base64: {e}") from e
    try:
        return MasterKey.from_bytes(raw)
    except RecordingKeyError as e:
        raise RecordingKeyError(f"{source}: {e}") from e


def load_master_key(settings: RecordingSettings,
                    environ: Mapping[str, str] | None = None) -> MasterKey:
    """The configured key; RecordingKeyError says which file or variable and why."""
    env = os.environ if environ is None else environ
    if settings.key_env is not None:
        if settings.key_env not in env:
            raise RecordingKeyError(f"recording key variable {settings.key_env} is not set; "
                                    "recordings are encrypted and cannot be used without it")
        return parse_key(env[settings.key_env], f"variable {settings.key_env}")
    if settings.key_file is None:
        raise RecordingKeyError("no recording key configured (recordings.key_file)")
    return load_key_file(settings.key_file)


def load_key_file(path: Path) -> MasterKey:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RecordingKeyError(f"cannot read recording key {path}: {e.strerror}; recordings "
                                "are encrypted and cannot be used without it") from e
    if path.stat().st_mode & 0o077:
        log.warning("recording key %s is readable by group or others; chmod 600 it", path)
    return parse_key(data, str(path))


def generate_key_file(path: Path) -> Path:
    """Write a new base64 key with mode 0600; never overwrites (O_EXCL)."""
    try:
        return write_new_secret(path, base64.b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n")
    except FileExistsError as e:
        raise RecordingKeyError(f"{path} already exists; refusing to overwrite a key") from e
