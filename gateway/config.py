"""``phigate.yaml`` → frozen, validated settings.

Everything is checked at start-up (and on SIGHUP): unknown keys are errors so a
typo can never silently weaken security, and every error names the file, the
line and the key path. Relative paths resolve against the config file's folder.
Secrets are read here, wrapped in :class:`Secret` so they never reach a log.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from protocols.postgres.framing import DEFAULT_MAX_MESSAGE_SIZE
from protocols.postgres.scram import InvalidVerifier, ScramVerifier, parse_verifier

from .errors import ConfigError
from .journal.settings import JournalSettings
from .yamlsource import line_of, load_yaml

TlsMode = Literal["disable", "require", "verify-full"]
TLS_MODES: tuple[TlsMode, ...] = ("disable", "require", "verify-full")
FALLBACK_DATABASE = "*"


@dataclass(frozen=True, slots=True)
class Secret:
    """A credential; its repr never shows the value."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('**********')"


@dataclass(frozen=True, slots=True)
class ClientTls:
    cert: Path
    key: Path
    require: bool = False


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    name: str
    host: str
    port: int
    dbname: str | None  # None for the "*" fallback: use the name the client asked for
    user: str
    password: Secret | None
    tls: TlsMode = "disable"
    ca: Path | None = None
    connect_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class UserSettings:
    name: str
    verifier: ScramVerifier
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Limits:
    max_connections: int = 1000
    idle_timeout_s: float = 0.0  # 0 = no idle timeout
    startup_timeout_s: float = 10.0
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    shutdown_grace_s: float = 30.0
    auth_failure_delay_s: float = 0.5
    auth_max_failures: int = 10
    auth_failure_window_s: float = 60.0


@dataclass(frozen=True, slots=True)
class RecordingSettings:
    """``recordings:`` — encrypted session recordings (key: 32 random bytes, base64)."""

    dir: Path
    key_file: Path | None = None
    key_env: str | None = None  # alternative to key_file: the base64 key in this variable
    capture_rows: int = 100  # result rows kept per statement; 0 = none
    required: bool = True  # a recording that cannot be written refuses the statement
    flush_interval_s: float = 1.0  # longest a recorded event waits before its chunk is sealed


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """``metrics:`` — Prometheus endpoint, /healthz and /readyz."""

    host: str
    port: int
    per_user: bool = False  # identities as label values (bounded by the configured users)


ALERT_CONDITIONS = ("failed_logins", "off_hours", "denied", "bulk_export", "volume",
                    "break_glass", "journal", "new_client")
SINK_TYPES = ("webhook", "log", "syslog")


@dataclass(frozen=True, slots=True)
class SinkSettings:
    name: str
    type: str
    url: str | None = None
    secret: Secret | None = None  # webhook HMAC key, from secret_env
    timeout_s: float = 5.0
    max_queue: int = 1000
    retries: int = 5
    syslog_address: str | None = None  # "/dev/log" or "host:port" (UDP)
    facility: str = "auth"


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One alert rule; ``params`` holds the condition's own keys (validated here)."""

    name: str
    when: str
    sinks: tuple[str, ...]
    threshold: int | None = None
    window_s: float | None = None
    hours: str | None = None
    days: tuple[str, ...] = ()
    timezone: str | None = None
    rules: tuple[str, ...] = ()  # for `denied`: only these policy rules (empty: any)
    dedupe_s: float = 300.0


@dataclass(frozen=True, slots=True)
class AlertSettings:
    sinks: Mapping[str, SinkSettings]
    rules: tuple[AlertRule, ...]


@dataclass(frozen=True, slots=True)
class Settings:
    source: Path
    sha256: str
    listen_host: str
    listen_port: int
    tls: ClientTls | None
    databases: Mapping[str, DatabaseSettings]
    users: Mapping[str, UserSettings]
    policy_files: tuple[Path, ...]
    journal: JournalSettings | None
    limits: Limits
    log_level: str = "info"
    recordings: RecordingSettings | None = None
    metrics: MetricsSettings | None = None
    alerts: AlertSettings | None = None

    def database_for(self, name: str) -> DatabaseSettings | None:
        """The upstream for a client-requested database name (``*`` is the fallback)."""
        return self.databases.get(name) or self.databases.get(FALLBACK_DATABASE)


class _Section:
    """A mapping being validated, with the file and key path for error messages."""

    def __init__(self, data: object, file: str, path: str, base_dir: Path) -> None:
        if not isinstance(data, dict):
            raise ConfigError("must be a mapping", file=file, line=line_of(data), key=path or None)
        self.data: dict[str, Any] = data
        self.file = file
        self.where = path
        self.base_dir = base_dir

    def key_path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def error(self, key: str | None, message: str) -> ConfigError:
        return ConfigError(message, file=self.file, line=line_of(self.data, key),
                           key=self.key_path(key) if key else self.where or None)

    def only(self, *allowed: str) -> None:
        for key in self.data:
            if key not in allowed:
                raise self.error(key, f"unknown key (expected one of: {', '.join(allowed)})")

    def child(self, key: str) -> _Section:
        if key not in self.data:
            raise self.error(None, f"missing required key {key!r}")
        value = self.data[key]
        if not isinstance(value, dict):
            raise self.error(key, "must be a mapping")
        return _Section(value, self.file, self.key_path(key), self.base_dir)

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            raise self.error(None if key not in self.data else key, f"missing required key {key!r}")
        if not isinstance(value, str) or not value:
            raise self.error(key, "must be a non-empty string")
        return value

    def optional_text(self, key: str) -> str | None:
        return self.text(key) if key in self.data else None

    def integer(self, key: str, default: int, *, minimum: int = 0) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(key, f"must be an integer >= {minimum}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, "must be true or false")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.data.get(key, default)
        if value not in choices:
            raise self.error(key, f"must be one of: {', '.join(choices)}")
        return str(value)

    def path(self, key: str) -> Path:
        return (self.base_dir / self.text(key)).resolve()

    def optional_path(self, key: str) -> Path | None:
        return self.path(key) if key in self.data else None

    def paths(self, key: str) -> tuple[Path, ...]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(key, "must be a list of paths")
        return tuple((self.base_dir / v).resolve() for v in value)

    def duration(self, key: str, default: float) -> float:
        value = self.data.get(key, default)
        try:
            return parse_duration(value)
        except ValueError as e:
            raise self.error(key, str(e)) from e

    def size(self, key: str, default: int) -> int:
        value = self.data.get(key, default)
        try:
            return parse_size(value)
        except ValueError as e:
            raise self.error(key, str(e)) from e


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KB": 1000, "KiB": 1024, "MB": 10**6, "MiB": 1024**2,
               "GB": 10**9, "GiB": 1024**3}


def parse_duration(value: object) -> float:
    """``30``, ``30s``, ``5m``, ``250ms``, ``1h`` → seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30s, 5m or 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError("must be a duration such as 30s, 5m or 1h")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(value: object) -> int:
    """``1048576``, ``64MiB``, ``1GB`` → bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if not match or int(match.group(1)) <= 0:
        raise ValueError("must be a positive size such as 65536, 64MiB or 1GB")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:6432")
    return host.strip("[]") or "0.0.0.0", int(port)


TOP_LEVEL_KEYS = ("listen", "tls", "databases", "users", "policies", "journal", "limits", "log",
                  "recordings", "metrics", "alerts")


def load_config(path: str | os.PathLike[str], *,
                environ: Mapping[str, str] | None = None) -> Settings:
    """Read, parse and validate a phigate.yaml. Raises ConfigError."""
    source = Path(path).resolve()
    try:
        raw = source.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read config: {e.strerror}", file=str(path)) from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError("config is not valid UTF-8", file=str(path)) from e
    root = _Section(load_yaml(text, str(path)), str(path), "", source.parent)
    root.only(*TOP_LEVEL_KEYS)
    env = os.environ if environ is None else environ
    try:
        host, port = parse_listen(root.text("listen", "127.0.0.1:6432"))
    except ValueError as e:
        raise root.error("listen", str(e)) from e
    return Settings(
        source=source,
        sha256=hashlib.sha256(raw).hexdigest(),
        listen_host=host,
        listen_port=port,
        tls=_client_tls(root),
        databases=_databases(root, env),
        users=_users(root),
        policy_files=root.paths("policies"),
        journal=_journal(root.child("journal")) if "journal" in root.data else None,
        limits=_limits(root),
        log_level=_log_level(root),
        recordings=_recordings(root.child("recordings")) if "recordings" in root.data else None,
        metrics=_metrics(root) if root.data.get("metrics") is not None else None,
        alerts=_alerts(root.child("alerts"), env) if "alerts" in root.data else None,
    )


def _client_tls(root: _Section) -> ClientTls | None:
    if "tls" not in root.data or root.data["tls"] is None:
        return None
    tls = root.child("tls")
    tls.only("cert", "key", "require")
    return ClientTls(cert=tls.path("cert"), key=tls.path("key"), require=tls.flag("require", False))


def _databases(root: _Section, env: Mapping[str, str]) -> dict[str, DatabaseSettings]:
    section = root.child("databases")
    if not section.data:
        raise section.error(None, "at least one database is required")
    return {name: _database(section.child(name), name, env) for name in section.data}


def _database(db: _Section, name: str, env: Mapping[str, str]) -> DatabaseSettings:
    db.only("host", "port", "dbname", "user", "password_env", "password_file", "tls", "ca",
            "connect_timeout")
    tls = db.choice("tls", TLS_MODES, "disable")
    ca = db.optional_path("ca")
    if tls == "verify-full" and ca is None:
        raise db.error("tls", "verify-full needs 'ca: path' to the CA certificate")
    default_dbname = None if name == FALLBACK_DATABASE else name
    return DatabaseSettings(
        name=name,
        host=db.text("host", "127.0.0.1"),
        port=db.integer("port", 5432, minimum=1),
        dbname=db.optional_text("dbname") or default_dbname,
        user=db.text("user"),
        password=_upstream_password(db, env),
        tls=tls,  # type: ignore[arg-type]
        ca=ca,
        connect_timeout_s=db.duration("connect_timeout", 10.0),
    )


def _upstream_password(db: _Section, env: Mapping[str, str]) -> Secret | None:
    if "password_env" in db.data and "password_file" in db.data:
        raise db.error("password_file", "give either password_env or password_file, not both")
    if "password_env" in db.data:
        var = db.text("password_env")
        if var not in env:
            raise db.error("password_env", f"environment variable {var} is not set")
        return Secret(env[var])
    if "password_file" in db.data:
        path = db.path("password_file")
        try:
            return Secret(path.read_text(encoding="utf-8").rstrip("\r\n"))
        except OSError as e:
            raise db.error("password_file", f"cannot read {path}: {e.strerror}") from e
    return None  # trust authentication upstream


def _users(root: _Section) -> dict[str, UserSettings]:
    if "users" not in root.data or root.data["users"] is None:
        return {}
    section = root.child("users")
    users = {}
    for name in section.data:
        user = section.child(name)
        user.only("password", "groups")
        try:
            verifier = parse_verifier(user.text("password"))
        except InvalidVerifier as e:
            raise user.error("password", f"{e} (use `phigate passwd` to make one)") from e
        groups = user.data.get("groups", [])
        if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
            raise user.error("groups", "must be a list of group names")
        users[name] = UserSettings(name=name, verifier=verifier, groups=frozenset(groups))
    return users


def _journal(section: _Section) -> JournalSettings:
    section.only("dir", "signing_key", "durability", "parameters", "checkpoint_copies",
                 "checkpoint_url", "retention_days", "segment_max_bytes", "segment_max_age",
                 "checkpoint_interval", "heartbeat_interval")
    return JournalSettings(
        dir=section.path("dir"),
        signing_key=section.path("signing_key"),
        durability=section.choice("durability", ("fsync", "write"), "fsync"),  # type: ignore[arg-type]
        parameters=section.choice("parameters", ("full", "digest", "none"), "digest"),  # type: ignore[arg-type]
        checkpoint_copies=section.paths("checkpoint_copies"),
        checkpoint_url=section.optional_text("checkpoint_url"),
        retention_days=section.integer("retention_days", 2190, minimum=1),
        segment_max_bytes=section.size("segment_max_bytes", 64 * 1024 * 1024),
        segment_max_age_s=section.duration("segment_max_age", 86400.0),
        checkpoint_interval_s=section.duration("checkpoint_interval", 1.0),
        heartbeat_interval_s=section.duration("heartbeat_interval", 60.0),
    )


def _limits(root: _Section) -> Limits:
    if "limits" not in root.data:
        return Limits()
    section = root.child("limits")
    section.only("max_connections", "idle_timeout", "startup_timeout", "max_message_size",
                 "shutdown_grace", "auth_failure_delay", "auth_max_failures",
                 "auth_failure_window")
    defaults = Limits()
    return Limits(
        max_connections=section.integer("max_connections", defaults.max_connections, minimum=1),
        idle_timeout_s=section.duration("idle_timeout", defaults.idle_timeout_s),
        startup_timeout_s=section.duration("startup_timeout", defaults.startup_timeout_s),
        max_message_size=section.size("max_message_size", defaults.max_message_size),
        shutdown_grace_s=section.duration("shutdown_grace", defaults.shutdown_grace_s),
        auth_failure_delay_s=section.duration("auth_failure_delay", defaults.auth_failure_delay_s),
        auth_max_failures=section.integer("auth_max_failures", defaults.auth_max_failures,
                                          minimum=1),
        auth_failure_window_s=section.duration("auth_failure_window",
                                               defaults.auth_failure_window_s),
    )


def _log_level(root: _Section) -> str:
    if "log" not in root.data:
        return "info"
    section = root.child("log")
    section.only("level")
    return section.choice("level", ("debug", "info", "warning", "error"), "info")


def _recordings(section: _Section) -> RecordingSettings:
    section.only("dir", "key_file", "key_env", "capture_rows", "required", "flush_interval")
    if ("key_file" in section.data) == ("key_env" in section.data):
        raise section.error(None, "give exactly one of key_file or key_env "
                                  "(`phigate keygen --recording-key PATH` makes a key file)")
    return RecordingSettings(
        dir=section.path("dir"),
        key_file=section.optional_path("key_file"),
        key_env=section.optional_text("key_env"),
        capture_rows=section.integer("capture_rows", 100),
        required=section.flag("required", True),
        flush_interval_s=section.duration("flush_interval", 1.0),
    )


def _metrics(root: _Section) -> MetricsSettings:
    value = root.data["metrics"]
    if isinstance(value, str):
        listen, per_user = value, False
    else:
        section = root.child("metrics")
        section.only("listen", "per_user")
        listen, per_user = section.text("listen"), section.flag("per_user", False)
    try:
        host, port = parse_listen(listen)
    except ValueError as e:
        raise root.error("metrics", str(e)) from e
    return MetricsSettings(host=host, port=port, per_user=per_user)


_CONDITION_KEYS: dict[str, tuple[str, ...]] = {
    "failed_logins": ("threshold", "window"),
    "off_hours": ("hours", "days", "timezone"),
    "denied": ("rules",),
    "bulk_export": (),
    "volume": ("threshold", "window"),
    "break_glass": (),
    "journal": (),
    "new_client": (),
}
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _alerts(section: _Section, env: Mapping[str, str]) -> AlertSettings:
    section.only("sinks", "rules")
    sinks: dict[str, SinkSettings] = {}
    if "sinks" in section.data:
        sinks_section = section.child("sinks")
        sinks = {name: _sink(sinks_section.child(name), name, env)
                 for name in sinks_section.data}
    rules_value = section.data.get("rules", [])
    if not isinstance(rules_value, list):
        raise section.error("rules", "must be a list of rules")
    rules = []
    for index, item in enumerate(rules_value):
        rule = _Section(item, section.file, f"{section.key_path('rules')}[{index}]",
                        section.base_dir)
        rules.append(_alert_rule(rule, sinks))
    names = [r.name for r in rules]
    for name in names:
        if names.count(name) > 1:
            raise section.error("rules", f"alert rule name {name!r} is used twice")
    return AlertSettings(sinks=sinks, rules=tuple(rules))


def _sink(sink: _Section, name: str, env: Mapping[str, str]) -> SinkSettings:
    kind = sink.choice("type", SINK_TYPES, "")
    if kind == "webhook":
        sink.only("type", "url", "secret_env", "timeout", "max_queue", "retries")
        url = sink.text("url")
        if not url.startswith(("http://", "https://")):
            raise sink.error("url", "must be an http:// or https:// URL")
        secret = None
        if "secret_env" in sink.data:
            var = sink.text("secret_env")
            if var not in env:
                raise sink.error("secret_env", f"environment variable {var} is not set")
            secret = Secret(env[var])
        return SinkSettings(name=name, type=kind, url=url, secret=secret,
                            timeout_s=sink.duration("timeout", 5.0),
                            max_queue=sink.integer("max_queue", 1000, minimum=1),
                            retries=sink.integer("retries", 5))
    if kind == "syslog":
        sink.only("type", "address", "facility")
        return SinkSettings(name=name, type=kind,
                            syslog_address=sink.optional_text("address") or "/dev/log",
                            facility=sink.text("facility", "auth"))
    sink.only("type")
    return SinkSettings(name=name, type=kind)


def _alert_rule(rule: _Section, sinks: Mapping[str, SinkSettings]) -> AlertRule:
    when = rule.choice("when", ALERT_CONDITIONS, "")
    rule.only("name", "when", "sinks", "dedupe", *_CONDITION_KEYS[when])
    sink_names = rule.data.get("sinks", [])
    if not isinstance(sink_names, list) or not all(isinstance(n, str) for n in sink_names):
        raise rule.error("sinks", "must be a list of sink names")
    for name in sink_names:
        if name not in sinks:
            raise rule.error("sinks", f"unknown sink {name!r} (define it under alerts.sinks)")
    days = rule.data.get("days", [])
    if not isinstance(days, list) or any(d not in _DAYS for d in days):
        raise rule.error("days", f"must be a list of: {', '.join(_DAYS)}")
    hours = rule.optional_text("hours")
    if hours is not None and not re.fullmatch(r"\d\d:\d\d-\d\d:\d\d", hours):
        raise rule.error("hours", 'must look like "07:00-19:00"')
    timezone = rule.optional_text("timezone")
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise rule.error("timezone", f"unknown time zone {timezone!r}") from e
    names = rule.data.get("rules", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise rule.error("rules", "must be a list of policy rule names")
    needs_threshold = when in ("failed_logins", "volume")
    return AlertRule(
        name=rule.text("name"), when=when, sinks=tuple(sink_names),
        threshold=rule.integer("threshold", 5 if when == "failed_logins" else 10000,
                               minimum=1) if needs_threshold else None,
        window_s=rule.duration("window", 300.0 if when == "failed_logins" else 3600.0)
        if needs_threshold else None,
        hours=hours, days=tuple(days), timezone=timezone, rules=tuple(names),
        dedupe_s=rule.duration("dedupe", 300.0),
    )
