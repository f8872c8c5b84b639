"""The ``console:`` section of ``phigate.yaml``, validated into :class:`ConsoleSettings`.

Read by ``gateway/settings/config.py``; used by ``phigate console`` (``cli``). Without TLS the
console may only listen on a loopback address: its cookies would otherwise cross the network
in clear. ``console.sso`` (sign-in with the ``sso:`` provider) names where the provider sends
people back and where the client secret is; the secret itself is read only when the console
starts (:func:`read_client_secret`), so ``phigate serve`` never needs it.
"""

from __future__ import annotations

import ipaddress
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..settings.values import Secret, Section, parse_listen

DEFAULT_LISTEN = "127.0.0.1:8443"
DEFAULT_INDEX = "console-index.sqlite3"
CALLBACK_PATH = "/login/sso/callback"  # where the console serves the provider's answer
DEFAULT_SCOPE = "openid email profile groups"


@dataclass(frozen=True, slots=True)
class ConsoleSso:
    """Sign-in with the ``sso:`` provider (authorization code flow, confidential client).

    ``client_id``: None means ``sso.client_id``. Exactly one of ``client_secret_file`` and
    ``client_secret_env`` is set. ``provider_name`` labels the button (None: the issuer's
    host)."""

    redirect_uri: str
    client_secret_file: Path | None
    client_secret_env: str | None
    client_id: str | None = None
    provider_name: str | None = None
    scope: str = DEFAULT_SCOPE


@dataclass(frozen=True, slots=True)
class ConsoleTls:
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """``journal``: the journal to show (default ``journal.dir``; another path is an offline
    copy). ``journal_key``: its public key (default: the signing key's ``.pub``)."""

    host: str
    port: int
    auditors: frozenset[str]  # identity or group names
    index: Path
    tls: ConsoleTls | None = None
    journal: Path | None = None
    journal_key: Path | None = None
    checkpoint_copies: tuple[Path, ...] = ()
    session_idle_s: float = 1800.0
    session_max_s: float = 43200.0
    sso: ConsoleSso | None = None


def parse_console(section: Section) -> ConsoleSettings:
    section.only("listen", "tls", "auditors", "index", "journal", "journal_key",
                 "checkpoint_copies", "session_idle", "session_max", "sso")
    try:
        host, port = parse_listen(section.text("listen", DEFAULT_LISTEN))
    except ValueError as e:
        raise section.error("listen", str(e)) from e
    tls = _tls(section)
    if tls is None and not _loopback(host):
        raise section.error("listen", "without console.tls the console may only listen on a "
                                      "loopback address (127.0.0.1, ::1)")
    return ConsoleSettings(
        host=host, port=port, auditors=_auditors(section),
        index=section.optional_path("index") or (section.base_dir / DEFAULT_INDEX).resolve(),
        tls=tls, journal=section.optional_path("journal"),
        journal_key=section.optional_path("journal_key"),
        checkpoint_copies=section.paths("checkpoint_copies"),
        session_idle_s=section.duration("session_idle", 1800.0),
        session_max_s=section.duration("session_max", 43200.0),
        sso=_sso(section.child("sso")) if section.data.get("sso") is not None else None,
    )


def _sso(section: Section) -> ConsoleSso:
    section.only("redirect_uri", "client_id", "client_secret_file", "client_secret_env",
                 "provider_name", "scope")
    if ("client_secret_file" in section.data) == ("client_secret_env" in section.data):
        raise section.error(None, "give exactly one of client_secret_file or "
                                  "client_secret_env (the console's OAuth client secret)")
    scope = section.text("scope", DEFAULT_SCOPE)
    if "openid" not in scope.split():
        raise section.error("scope", "must include openid (the console signs in with the "
                                     "ID token)")
    return ConsoleSso(
        redirect_uri=_redirect_uri(section), client_id=section.optional_text("client_id"),
        client_secret_file=section.optional_path("client_secret_file"),
        client_secret_env=section.optional_text("client_secret_env"),
        provider_name=section.optional_text("provider_name"), scope=scope)


def _redirect_uri(section: Section) -> str:
    """The console's own callback as the provider knows it: https, or http on loopback."""
    uri = section.text("redirect_uri")
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise section.error("redirect_uri", "must be an absolute https:// URL")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise section.error("redirect_uri", "must be https:// unless the host is a loopback "
                                            "address (the authorization code travels in it)")
    if parts.path != CALLBACK_PATH or parts.query or parts.fragment:
        raise section.error("redirect_uri", f"must end in {CALLBACK_PATH}, without query or "
                                            "fragment (where the console serves the answer)")
    return uri


def read_client_secret(sso: ConsoleSso, source: str,
                       environ: Mapping[str, str] | None = None) -> Secret:
    """The client secret, read when the console starts; raises ConfigError."""
    env = os.environ if environ is None else environ
    if sso.client_secret_env is not None:
        value = env.get(sso.client_secret_env, "")
        if not value:
            raise ConfigError(f"environment variable {sso.client_secret_env} is not set",
                              file=source, key="console.sso.client_secret_env")
        return Secret(value)
    path = sso.client_secret_file
    if path is None:
        raise ConfigError("give client_secret_file or client_secret_env", file=source,
                          key="console.sso")
    try:
        value = path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}",
                          file=source, key="console.sso.client_secret_file") from e
    if not value:
        raise ConfigError(f"{path} is empty", file=source, key="console.sso.client_secret_file")
    return Secret(value)


def _tls(section: Section) -> ConsoleTls | None:
    if section.data.get("tls") is None:
        return None
    tls = section.child("tls")
    tls.only("cert", "key")
    return ConsoleTls(cert=tls.path("cert"), key=tls.path("key"))


def _auditors(section: Section) -> frozenset[str]:
    value = section.data.get("auditors")
    if not isinstance(value, list) or not value or not all(
            isinstance(v, str) and v for v in value):
        raise section.error("auditors" if "auditors" in section.data else None,
                            "auditors must be a non-empty list of identity or group names")
    return frozenset(value)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
