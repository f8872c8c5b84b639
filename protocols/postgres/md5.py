"""PostgreSQL's legacy MD5 password response, for upstreams that still ask for it.

Driven by ``gateway/proxy/upstream.py`` when an upstream sends AuthenticationMD5Password; the
result goes back in a PasswordMessage. The gateway never offers MD5 to its own clients: SCRAM only.
"""

from __future__ import annotations

import hashlib

# AuthenticationMD5Password carries exactly four salt bytes.
SALT_LENGTH = 4


def md5_password(user: str, password: str, salt: bytes) -> str:
    """Return ``"md5" + md5(md5(password + user).hex + salt).hex``, as libpq sends it."""
    if len(salt) != SALT_LENGTH:
        raise ValueError(f"MD5 salt must be {SALT_LENGTH} bytes, got {len(salt)}")
    inner = _md5_hex((password + user).encode("utf-8"))
    return "md5" + _md5_hex(inner.encode("ascii") + salt)


def _md5_hex(data: bytes) -> str:
    # The protocol dictates MD5; flagging it keeps FIPS-mode Pythons from refusing to interoperate.
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
