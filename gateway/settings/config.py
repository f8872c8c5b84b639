"""``phigate.yaml`` → frozen, validated settings.

Everything is checked at start-up (and on SIGHUP): unknown keys are errors so a
typo can never silently weaken security, and every error names the file, the
line and the key path. Relative paths resolve against the config file's folder.
Secrets are read here, wrapped in :class:`Secret` so they never reach a log.
"""

from __future__ import annotations

import hashlib
import os
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from policies.steps import DEFAULT_MAX_STEPS
from policies.yamlsource import YamlSyntaxError, parse_located
from protocols.postgres.framing import DEFAULT_MAX_MESSAGE_SIZE
from protocols.postgres.scram import InvalidVerifier, ScramVerifier, parse_verifier

from ..access.settings import AccessSettings, parse_access
from ..alerts.settings import AlertSettings, parse_alerts
from ..archive.settings import ArchiveSettings, parse_archive
from ..console.settings import ConsoleSettings, parse_console
from ..drill.settings import DrillSettings, parse_drill
from ..errors import ConfigError
from ..journal.settings import JournalSettings
from ..masking.settings import MaskingSettings, parse_masking
from ..sso.settings import SsoSettings, parse_sso
from .values import Secret, Section, parse_listen

TlsMode = Literal["disable", "require", "verify-full"]
TLS_MODES: tuple[TlsMode, ...] = ("disable", "require", "verify-full")
FALLBACK_DATABASE = "*"


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


# What the upstream sees as application_name: the person stays visible in the database's own
# logs and pg_stat_activity. Placeholders: {identity} and {application_name} (the client's).
DEFAULT_UPSTREAM_APPLICATION_NAME = "phigate/{identity}/{application_name}"
_APPLICATION_NAME_FIELDS = frozenset({"identity", "application_name"})


@dataclass(frozen=True, slots=True)
class Limits:
    max_connections: int = 1000
    idle_timeout_s: float = 0.0  # 0 = no idle timeout
    startup_timeout_s: float = 10.0
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    shutdown_grace_s: float = 30.0
    auth_failure_delay_s: float = 0.5
    auth_max_failures: int = 10  # per (user, client IP): a guessed password
    auth_failure_window_s: float = 60.0
    policy_steps: int = DEFAULT_MAX_STEPS  # per statement: views followed, relations checked
    # How often a database with open sessions is asked whether its catalog changed (DDL made
    # directly on it, bypassing the gateway); 0 = off. See gateway/policy/catalog_poll.py.
    catalog_poll_s: float = 2.0
    watchdog_timeout_s: float = 60.0  # 0 = off; see gateway/proxy/watchdog.py
    # Per client IP, over every user: password spraying. Much higher than the per-user
    # limit, so one person mistyping cannot lock out everyone behind the same bastion or NAT.
    auth_max_failures_per_ip: int = 100


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
    sso: SsoSettings | None = None
    access: AccessSettings | None = None
    masking: MaskingSettings | None = None
    upstream_application_name: str = DEFAULT_UPSTREAM_APPLICATION_NAME
    archive: ArchiveSettings | None = None
    drill: DrillSettings | None = None
    console: ConsoleSettings | None = None

    def database_for(self, name: str) -> DatabaseSettings | None:
        """The upstream for a client-requested database name (``*`` is the fallback)."""
        return self.databases.get(name) or self.databases.get(FALLBACK_DATABASE)


TOP_LEVEL_KEYS = ("listen", "tls", "databases", "users", "policies", "journal", "limits", "log",
                  "recordings", "metrics", "alerts", "sso", "access", "upstream_application_name",
                  "archive", "drill", "masking", "console")


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
    try:
        data = parse_located(text)
    except YamlSyntaxError as e:
        raise ConfigError(e.message, file=str(path), line=e.line) from e
    root = Section(data, str(path), "", source.parent)
    root.only(*TOP_LEVEL_KEYS)
    env = os.environ if environ is None else environ
    try:
        host, port = parse_listen(root.text("listen", "127.0.0.1:6432"))
    except ValueError as e:
        raise root.error("listen", str(e)) from e
    console = parse_console(root.child("console")) if "console" in root.data else None
    if console is not None and console.sso is not None and "sso" not in root.data:
        raise root.child("console").error("sso", "console sign-in with SSO needs the sso: "
                                                 "section (issuer, client_id, ...)")
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
        alerts=parse_alerts(root.child("alerts"), env) if "alerts" in root.data else None,
        sso=parse_sso(root.child("sso")) if "sso" in root.data else None,
        access=parse_access(root.child("access")) if "access" in root.data else None,
        masking=parse_masking(root.child("masking")) if "masking" in root.data else None,
        upstream_application_name=_application_name(root),
        archive=parse_archive(root.child("archive")) if "archive" in root.data else None,
        drill=parse_drill(root.child("drill"), env) if "drill" in root.data else None,
        console=console,
    )


def _application_name(root: Section) -> str:
    template = root.text("upstream_application_name", DEFAULT_UPSTREAM_APPLICATION_NAME)
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as e:
        raise root.error("upstream_application_name", f"not a valid template: {e}") from e
    unknown = fields - _APPLICATION_NAME_FIELDS
    if unknown:
        raise root.error("upstream_application_name",
                         f"unknown placeholder {{{sorted(unknown)[0]}}}; use {{identity}} "
                         "and {application_name}")
    try:
        template.format(identity="", application_name="")
    except (ValueError, AttributeError, IndexError, KeyError) as e:  # e.g. {identity.x}
        raise root.error("upstream_application_name", f"not a valid template: {e}") from e
    return template


def _client_tls(root: Section) -> ClientTls | None:
    if "tls" not in root.data or root.data["tls"] is None:
        return None
    tls = root.child("tls")
    tls.only("cert", "key", "require")
    return ClientTls(cert=tls.path("cert"), key=tls.path("key"), require=tls.flag("require", False))


def _databases(root: Section, env: Mapping[str, str]) -> dict[str, DatabaseSettings]:
    section = root.child("databases")
    if not section.data:
        raise section.error(None, "at least one database is required")
    return {name: _database(section.child(name), name, env) for name in section.data}


def _database(db: Section, name: str, env: Mapping[str, str]) -> DatabaseSettings:
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


def _upstream_password(db: Section, env: Mapping[str, str]) -> Secret | None:
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


def _users(root: Section) -> dict[str, UserSettings]:
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


def _journal(section: Section) -> JournalSettings:
    section.only("dir", "signing_key", "durability", "parameters", "checkpoint_copies",
                 "checkpoint_url", "retention_days", "segment_max_bytes", "segment_max_age",
                 "checkpoint_interval", "heartbeat_interval", "overlap_reads")
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
        overlap_reads=section.flag("overlap_reads", True),
    )


def _limits(root: Section) -> Limits:
    if "limits" not in root.data:
        return Limits()
    section = root.child("limits")
    section.only("max_connections", "idle_timeout", "startup_timeout", "max_message_size",
                 "shutdown_grace", "auth_failure_delay", "auth_max_failures",
                 "auth_failure_window", "policy_steps", "watchdog_timeout",
                 "auth_max_failures_per_ip", "catalog_poll_interval")
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
        policy_steps=section.integer("policy_steps", defaults.policy_steps, minimum=1),
        catalog_poll_s=section.duration("catalog_poll_interval", defaults.catalog_poll_s),
        watchdog_timeout_s=section.duration("watchdog_timeout", defaults.watchdog_timeout_s),
        auth_max_failures_per_ip=section.integer(
            "auth_max_failures_per_ip", defaults.auth_max_failures_per_ip, minimum=1),
    )


def _log_level(root: Section) -> str:
    if "log" not in root.data:
        return "info"
    section = root.child("log")
    section.only("level")
    return section.choice("level", ("debug", "info", "warning", "error"), "info")


def _recordings(section: Section) -> RecordingSettings:
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


def _metrics(root: Section) -> MetricsSettings:
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
