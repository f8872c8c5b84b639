"""Ed25519 key files for signing checkpoints, and the parameter-digest key.

``phigate keygen PATH`` writes ``PATH.key`` (PKCS#8 PEM, mode 0600) and
``PATH.pub`` (SubjectPublicKeyInfo PEM) for auditors. Loading also accepts a
raw 32-byte key or its hex, so keys from an HSM export or another tool work.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import KeyFileError

log = logging.getLogger("phigate.journal")

_PARAMETER_KEY_INFO = b"phigate-journal-parameter-digest-key-v1"


def key_paths(base: Path) -> tuple[Path, Path]:
    """``keys/journal`` → (``keys/journal.key``, ``keys/journal.pub``)."""
    return base.with_name(base.name + ".key"), base.with_name(base.name + ".pub")


def generate(base: Path) -> tuple[Path, Path]:
    """Write a new key pair next to ``base``; refuses to overwrite either file."""
    private_path, public_path = key_paths(base)
    for path in (private_path, public_path):
        if path.exists():
            raise KeyFileError(f"{path} already exists; refusing to overwrite a key")
    private_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_new(private_path, pem, 0o600)
    _write_new(public_path, pub, 0o644)
    return private_path, public_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: never follow a planted symlink or clobber a key created meanwhile.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read key file {path}: {e.strerror}") from e


def _raw(data: bytes) -> bytes | None:
    if len(data) == 32:
        return data
    text = data.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return None
    return None


def load_private(path: Path) -> Ed25519PrivateKey:
    """Load a signing key (PEM or raw); warns if others can read it."""
    data = _read(path)
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(data, password=None)
        elif (raw := _raw(data)) is not None:
            key = Ed25519PrivateKey.from_private_bytes(raw)
        else:
            raise ValueError("not PEM and not a raw 32-byte key")
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise KeyFileError(f"{path} is not a usable Ed25519 private key: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    if path.stat().st_mode & 0o077:
        log.warning("journal signing key %s is readable by group or others; chmod 600 it", path)
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    """Load a verification key (PEM or raw)."""
    data = _read(path)
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        elif (raw := _raw(data)) is not None:
            key = Ed25519PublicKey.from_public_bytes(raw)
        else:
            raise ValueError("not PEM and not a raw 32-byte key")
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise KeyFileError(f"{path} is not a usable Ed25519 public key: {e}") from e
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 public key")
    return key


def public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def derive_parameter_key(key: Ed25519PrivateKey) -> bytes:
    """A stable HMAC key for parameter digests, separate from the signing key itself.

    Stable across restarts so equal values correlate over the whole journal;
    only holders of the signing key can test guesses against a digest.
    """
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    return hmac.new(raw, _PARAMETER_KEY_INFO, hashlib.sha256).digest()
