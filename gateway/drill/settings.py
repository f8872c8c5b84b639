"""The ``drill:`` section: who the drill is, where it goes, what it expects, how often.

Parsed by ``gateway/settings/config.py``; used by ``phigate drill`` and the gateway's
schedule. The drill identity is a normal ``users:`` entry; its password comes from
``password_env`` or ``password_file`` (the gateway stores only its verifier).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..settings.values import Secret, Section

DEFAULT_STATEMENTS = ("SELECT 1 AS phigate_drill", "SELECT current_database()")


@dataclass(frozen=True, slots=True)
class DrillSettings:
    identity: str
    database: str | None  # None: the first configured database
    password: Secret = field(repr=False)
    every_s: float | None = None  # None: only `phigate drill`
    statements: tuple[str, ...] = DEFAULT_STATEMENTS
    denied: str | None = None  # a statement the policies must deny (42501)
    max_rows: str | None = None  # a statement the policies must cut (54000)
    failed_logins: int = 3
    report_dir: Path | None = None  # default: <journal dir>/drills
    timeout_s: float = 30.0
    archive_within_s: float = 120.0  # with archive: the drill's segment confirmed by then


def parse_drill(section: Section, env: Mapping[str, str]) -> DrillSettings:
    section.only("every", "identity", "database", "password_env", "password_file",
                 "statements", "denied", "max_rows", "failed_logins", "report_dir", "timeout",
                 "archive_within")
    statements = section.data.get("statements", list(DEFAULT_STATEMENTS))
    if not isinstance(statements, list) or not statements or not all(
            isinstance(s, str) and s.strip() for s in statements):
        raise section.error("statements", "must be a list of SQL statements")
    every = section.duration("every", 0.0) if "every" in section.data else None
    if every is not None and every <= 0:
        raise section.error("every", "must be positive")
    archive_within = section.duration("archive_within", 120.0)
    if archive_within <= 0:
        raise section.error("archive_within", "must be positive")
    return DrillSettings(
        identity=section.text("identity", "drill-bot"),
        database=section.optional_text("database"),
        password=_password(section, env),
        every_s=every,
        statements=tuple(statements),
        denied=section.optional_text("denied"),
        max_rows=section.optional_text("max_rows"),
        failed_logins=section.integer("failed_logins", 3),
        report_dir=section.optional_path("report_dir"),
        timeout_s=section.duration("timeout", 30.0),
        archive_within_s=archive_within,
    )


def _password(section: Section, env: Mapping[str, str]) -> Secret:
    if ("password_env" in section.data) == ("password_file" in section.data):
        raise section.error(None, "give exactly one of password_env or password_file (the "
                                  "drill identity's password; users: holds its verifier)")
    if "password_env" in section.data:
        var = section.text("password_env")
        if var not in env:
            raise section.error("password_env", f"environment variable {var} is not set")
        return Secret(env[var])
    path = section.path("password_file")
    try:
        return Secret(path.read_text(encoding="utf-8").rstrip("\r\n"))
    except OSError as e:
        raise section.error("password_file", f"cannot read {path}: {e.strerror}") from e
