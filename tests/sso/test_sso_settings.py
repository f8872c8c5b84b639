"""The ``sso:`` section through ``phigate check-config``: weak settings are config errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.sso.conftest import phigate

BASE: dict[str, Any] = {
    "databases": {"clinic": {"host": "127.0.0.1", "user": "svc"}},
    "sso": {"issuer": "https://idp.example", "client_id": "phigate"},
}


def check(tmp_path: Path, **sso: Any) -> tuple[int, str]:
    config = {**BASE, "sso": {**BASE["sso"], **sso}}
    path = tmp_path / "phigate.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = phigate("check-config", "-c", str(path))
    return result.returncode, result.stdout + result.stderr


def test_a_complete_sso_section_is_accepted(tmp_path: Path) -> None:
    code, output = check(tmp_path, audience="api://phigate", groups_claim="roles",
                         username_claim="preferred_username", allowed_algorithms=["ES256"],
                         leeway="60s", expiry_grace="5m", jwks_refresh_floor="1m")
    assert code == 0, output


@pytest.mark.parametrize(("key", "value", "message"), [
    ("issuer", "http://idp.example", "must be an https:// URL"),
    ("leeway", "61s", "at most 60s"),
    ("allowed_algorithms", ["RS256", "HS256"], "'HS256' is not allowed"),
    ("allowed_algorithms", ["none"], "'none' is not allowed"),
    ("username_claim", "name", "must be one of"),
    ("secret", "x", "unknown key"),
])
def test_weak_or_unknown_settings_are_refused(tmp_path: Path, key: str, value: Any,
                                              message: str) -> None:
    code, output = check(tmp_path, **{key: value})
    assert code == 2
    assert f"sso.{key}" in output and message in output, output


@pytest.mark.parametrize(("access", "code", "message"), [
    ({"store": "var/access.sqlite3", "poll_interval": "100ms"}, 0, "OK"),
    ({"poll_interval": "2s"}, 2, "at most 1s"),
    ({"path": "x"}, 2, "unknown key"),
])
def test_access_section(tmp_path: Path, access: dict[str, Any], code: int, message: str) -> None:
    path = tmp_path / "phigate.yaml"
    path.write_text(yaml.safe_dump({**BASE, "access": access}), encoding="utf-8")
    result = phigate("check-config", "-c", str(path))
    assert result.returncode == code and message in result.stdout + result.stderr
