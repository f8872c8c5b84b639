"""The ``console:`` section of ``phigate.yaml``, validated into :class:`ConsoleSettings`.

Read by ``gateway/settings/config.py``; used by ``phigate console`` (``cli``). Without TLS the
console may only listen on a loopback address: its cookies would otherwise cross the network
in clear.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from ..settings.values import Section, parse_listen

DEFAULT_LISTEN = "127.0.0.1:8443"
DEFAULT_INDEX = "console-index.sqlite3"


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


def parse_console(section: Section) -> ConsoleSettings:
    section.only("listen", "tls", "auditors", "index", "journal", "journal_key",
                 "checkpoint_copies", "session_idle", "session_max")
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
    )


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
