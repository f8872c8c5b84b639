"""Config validation: the examples load; every mistake names file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.settings.config import load_config
from gateway.settings.values import parse_duration, parse_size

REPO = Path(__file__).resolve().parents[2]
ENV = {"CLINIC_DB_PASSWORD": "s3cret", "PHIGATE_WEBHOOK_SECRET": "hook"}
BASE = """\
listen: 127.0.0.1:6432
databases:
  clinic:
    host: 127.0.0.1
    user: phigate_svc
    password_env: CLINIC_DB_PASSWORD
users:
  alice:
    password: "{verifier}"
    groups: [clinicians]
"""
VERIFIER = ("SCRAM-SHA-256$4096:cGhpZ2F0ZS1leGFtcGxlLTE=$"
            "RUnpG5ldvwxxNpKSxG6qGi1IQ7gdUuQZ2xqPfDgiL8o=:"
            "4UJuJR1bg1wOvJjWmM2NxsbQeWKcQlkhZOTvkUQ+rJc=")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "phigate.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_config_loads() -> None:
    settings = load_config(REPO / "examples" / "phigate.yaml", environ=ENV)
    assert settings.databases["clinic"].password is not None
    assert "s3cret" not in repr(settings)  # secrets have a masked repr
    assert settings.policy_files[0].name == "clinic.yaml" and settings.policy_files[0].exists()
    assert settings.journal is not None and settings.journal.durability == "fsync"
    assert settings.recordings is not None and settings.recordings.capture_rows == 100
    assert settings.metrics is not None and settings.metrics.port == 9187
    assert settings.alerts is not None and len(settings.alerts.rules) == 3


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.format(verifier=VERIFIER)
                 + "policies: [p/clinic.yaml]\njournal: {dir: j, signing_key: k/journal.key}\n")
    settings = load_config(path, environ=ENV)
    assert settings.policy_files == (tmp_path / "p" / "clinic.yaml",)
    assert settings.journal is not None and settings.journal.dir == tmp_path / "j"


@pytest.mark.parametrize(("extra", "line", "key", "message"), [
    ("tsl: {require: true}\n", 11, "tsl", "unknown key"),
    ("limits: {idle_timeout: soon}\n", 11, "limits.idle_timeout", "duration"),
    ("limits: {max_message_size: -1}\n", 11, "limits.max_message_size", "size"),
    ("limits: {catalog_poll_interval: -2}\n", 11, "limits.catalog_poll_interval",
     "negative"),
    ("journal: {dir: j, signing_key: k, durability: sometimes}\n", 11, "journal.durability",
     "one of"),
    ("metrics: nowhere\n", 11, "metrics", "HOST:PORT"),
    ("alerts: {rules: [{name: x, when: never, sinks: []}]}\n", 11, "alerts.rules[0].when",
     "one of"),
    ("alerts: {rules: [{name: x, when: denied, sinks: [nope]}]}\n", 11,
     "alerts.rules[0].sinks", "unknown sink"),
    ("recordings: {dir: r}\n", 11, "recordings", "key_file or key_env"),
])
def test_mistakes_name_file_line_and_key(tmp_path: Path, extra: str, line: int, key: str,
                                         message: str) -> None:
    path = write(tmp_path, BASE.format(verifier=VERIFIER) + extra)
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ=ENV)
    text = str(raised.value)
    assert text.startswith(f"{path}:{line}: {key}:"), text
    assert message in text


def test_plaintext_password_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.format(verifier="hunter2"))
    with pytest.raises(ConfigError, match=r":9: users.alice.password: .*phigate passwd"):
        load_config(path, environ=ENV)


def test_missing_secret_and_duplicate_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CLINIC_DB_PASSWORD is not set"):
        load_config(write(tmp_path, BASE.format(verifier=VERIFIER)), environ={})
    doubled = BASE.format(verifier=VERIFIER) + "listen: 0.0.0.0:1\n"
    with pytest.raises(ConfigError, match="duplicate key 'listen'"):
        load_config(write(tmp_path, doubled), environ=ENV)


def test_units() -> None:
    assert parse_duration("250ms") == 0.25 and parse_duration("5m") == 300
    assert parse_size("64MiB") == 64 * 1024 * 1024
    with pytest.raises(ValueError):
        parse_duration("-1")
