"""The provider's metadata (``/.well-known/openid-configuration``) over verified HTTPS.

Used by the gateway's validator (for ``jwks_uri``), by ``phigate login`` (for the
device authorization and token endpoints) and by the console's sign-in (authorization and
token endpoints). The fetch is blocking urllib: callers on the
event loop run it in a thread. The metadata's ``issuer`` must equal the configured issuer
exactly (OpenID Connect Discovery 1.0, section 4.3), so a look-alike provider cannot
hand out keys for ours.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_DOCUMENT_BYTES = 1024 * 1024  # metadata and key sets are a few KiB; cap what we parse


class ProviderError(Exception):
    """The identity provider could not be reached or answered nonsense."""


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    jwks_uri: str
    token_endpoint: str | None
    device_authorization_endpoint: str | None
    authorization_endpoint: str | None = None
    code_challenge_methods: tuple[str, ...] | None = None  # None: the provider does not say


def tls_context(ca: Path | None) -> ssl.SSLContext:
    """Verified TLS towards the provider; ``ca`` replaces the system trust store."""
    return ssl.create_default_context(cafile=str(ca) if ca else None)


def fetch_json(url: str, context: ssl.SSLContext, timeout_s: float,
               form: dict[str, str] | None = None,
               headers: dict[str, str] | None = None) -> dict[str, Any]:
    """GET (or POST ``form``) and parse a JSON object; OAuth error bodies are returned too."""
    if urllib.parse.urlsplit(url).scheme != "https":
        raise ProviderError(f"refusing a non-https provider URL: {url}")
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data,
                                     headers={"Accept": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout_s) as response:
            body = response.read(MAX_DOCUMENT_BYTES + 1)
    except urllib.error.HTTPError as e:  # OAuth errors come as 400 with a JSON body
        body = e.read(MAX_DOCUMENT_BYTES + 1)
        if not body.startswith(b"{"):
            raise ProviderError(f"{url}: HTTP {e.code}") from e
    except (urllib.error.URLError, OSError, ssl.SSLError) as e:
        raise ProviderError(f"{url}: {getattr(e, 'reason', e)}") from e
    if len(body) > MAX_DOCUMENT_BYTES:
        raise ProviderError(f"{url}: answer larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        document = json.loads(body)
    except ValueError as e:
        raise ProviderError(f"{url}: not JSON") from e
    if not isinstance(document, dict):
        raise ProviderError(f"{url}: not a JSON object")
    return document


def discover(issuer: str, context: ssl.SSLContext, timeout_s: float) -> ProviderMetadata:
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    document = fetch_json(url, context, timeout_s)
    if document.get("issuer") != issuer:
        raise ProviderError(f"provider metadata names issuer {document.get('issuer')!r}, "
                            f"not {issuer!r}")
    jwks_uri = document.get("jwks_uri")
    if not isinstance(jwks_uri, str) or not jwks_uri.startswith("https://"):
        raise ProviderError("provider metadata has no https jwks_uri")
    return ProviderMetadata(
        issuer=issuer, jwks_uri=jwks_uri,
        token_endpoint=_https(document.get("token_endpoint")),
        device_authorization_endpoint=_https(document.get("device_authorization_endpoint")),
        authorization_endpoint=_https(document.get("authorization_endpoint")),
        code_challenge_methods=_names(document.get("code_challenge_methods_supported")))


def _https(value: object) -> str | None:
    return value if isinstance(value, str) and value.startswith("https://") else None


def _names(value: object) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(v for v in value if isinstance(v, str))
