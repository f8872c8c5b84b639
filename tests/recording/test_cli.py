"""``phigate keygen --recording-key`` and the commands' refusals, without a gateway."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from gateway.cli import main


def test_keygen_writes_a_recording_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    path = tmp_path / "keys" / "recordings.key"
    assert main(["keygen", "--recording-key", str(path)]) == 0
    assert len(base64.b64decode(path.read_bytes().strip(), validate=True)) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert main(["keygen", "--recording-key", str(path)]) == 2  # never overwrites
    assert "already exists" in capsys.readouterr().err
    assert main(["keygen"]) == 2
    assert main(["keygen", str(tmp_path / "journal"), "--recording-key",
                 str(tmp_path / "second.key")]) == 0
    assert (tmp_path / "journal.key").exists() and (tmp_path / "second.key").exists()


def test_replay_needs_a_recordings_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    config = tmp_path / "phigate.yaml"
    config.write_text("journal: {dir: j, signing_key: k}\n"
                      "databases: {clinic: {user: svc, password_env: NOT_NEEDED}}\n")
    assert main(["replay", "-c", str(config), "abc"]) == 2
    assert "no recordings section" in capsys.readouterr().err
