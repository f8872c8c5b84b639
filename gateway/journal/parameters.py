"""How bind parameters (which may be PHI) are recorded in ``statement`` entries.

``full`` keeps the values (text, or ``\\x``-prefixed hex when not UTF-8, the way
PostgreSQL prints bytea); ``digest`` keeps a keyed HMAC-SHA-256 per value, so an
investigator holding the key can tell that two statements used the same value,
or test a suspected value, without the journal holding it; ``none`` keeps
nothing. SQL NULL stays ``null`` in every mode: it is not PHI, and telling it
apart from a value matters to an audit. Called by ``Journal.digest_parameters``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from .settings import ParameterMode

_DIGEST_DOMAIN = b"phigate-journal-parameter-v1\x00"


class ParameterRecorder:
    def __init__(self, mode: ParameterMode, key: bytes) -> None:
        self._mode = mode
        self._base = hmac.new(key, _DIGEST_DOMAIN, hashlib.sha256)

    def __call__(self, params: Sequence[bytes | None]) -> list[str | None] | None:
        if self._mode == "none":
            return None
        if self._mode == "digest":
            return [None if p is None else self._digest(p) for p in params]
        return [None if p is None else _text(p) for p in params]

    def _digest(self, value: bytes) -> str:
        h = self._base.copy()
        h.update(value)
        return h.hexdigest()


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return "\\x" + value.hex()
