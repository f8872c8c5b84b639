"""The masking hash key: a file of random bytes, read at start-up and on SIGHUP, per database.

The ``hash`` strategy is an HMAC-SHA256 of the value: equal values give equal pseudonyms, so
joins and GROUP BY on hashed columns still match, and nobody without the key can guess one by
hashing candidates. The key comes from ``masking.hash_key_file`` (32 or more random bytes, as
base64 or hex: ``phigate keygen --masking-key PATH``, or ``openssl rand -base64 32``), a file
only its owner may read; without it a random key lives as long as the gateway process.

Each database gets its own key, derived from the file's (HMAC of the database's *hash domain*,
its name unless ``masking.hash_domains`` puts several databases in one domain), so equal
values in different databases do not correlate unless configured. Driven by
``gateway/masking/settings.py`` (reading) and ``gateway/masking/hook.py`` (deriving).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path

from ..secretfile import write_new_secret

KEY_BYTES = 32  # HMAC-SHA256's block-sized key: 256 bits of secret
MAX_KEY_FILE = 4096  # a key file is a few dozen bytes; anything larger is not one
_DERIVE = b"phigate masking hash key v1\x00"
_HEX = frozenset(string.hexdigits)


class MaskingKeyError(ValueError):
    """The key file cannot be used; the message says why (no key material in it)."""


@dataclass(frozen=True, slots=True)
class HashKey:
    """The configured master key; its repr never shows it."""

    secret: bytes = field(repr=False)
    source: str = ""  # the file it came from, for logs

    def for_domain(self, domain: str) -> bytes:
        """The key of one hash domain (a database, or databases configured to share)."""
        return hmac.new(self.secret, _DERIVE + domain.encode("utf-8"), hashlib.sha256).digest()


def random_key() -> HashKey:
    """A key for this process only (no ``hash_key_file``): pseudonyms change on restart."""
    return HashKey(secrets.token_bytes(KEY_BYTES), "random, this process only")


def load_key(path: Path) -> HashKey:
    """Read and check a key file: owner-only, 32 or more bytes as base64 or hex."""
    try:
        info = path.stat()
        if info.st_size > MAX_KEY_FILE:
            raise MaskingKeyError(f"{path} is {info.st_size} bytes; a key file holds one key")
        data = path.read_bytes()
    except OSError as e:
        raise MaskingKeyError(f"cannot read {path}: {e.strerror}") from e
    if info.st_mode & 0o077:
        raise MaskingKeyError(f"{path} is readable by group or others "
                              f"(mode {info.st_mode & 0o777:o}); chmod 600 it")
    return HashKey(parse_key(data, str(path)), str(path))


def parse_key(data: bytes, source: str) -> bytes:
    text = data.strip()
    try:
        decoded = text.decode("ascii")
    except UnicodeDecodeError as e:
        raise MaskingKeyError(f"{source} is not base64 or hex text") from e
    try:
        if len(decoded) % 2 == 0 and decoded and set(decoded) <= _HEX:
            raw = bytes.fromhex(decoded)
        else:
            raw = base64.b64decode(decoded, validate=True)
    except (ValueError, binascii.Error) as e:
        raise MaskingKeyError(f"{source} is not base64 or hex text") from e
    if len(raw) < KEY_BYTES:
        raise MaskingKeyError(f"{source} holds {len(raw)} bytes; a hash key needs at least "
                              f"{KEY_BYTES} random bytes")
    return raw


def generate_key_file(path: Path) -> Path:
    """Write a new base64 key with mode 0600; never overwrites (O_EXCL)."""
    try:
        return write_new_secret(path, base64.b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n")
    except FileExistsError as e:
        raise MaskingKeyError(f"{path} already exists; refusing to overwrite a key") from e
