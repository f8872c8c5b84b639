"""The masking hash key: file checks with file:line:key errors, formats, per-database keys."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.masking.keys import (
    KEY_BYTES,
    HashKey,
    MaskingKeyError,
    generate_key_file,
    load_key,
    parse_key,
)
from gateway.settings.config import load_config
from tests.settings.test_config import BASE, ENV, VERIFIER

KEY = bytes(range(KEY_BYTES))


def _key_file(tmp_path: Path, data: bytes, mode: int = 0o600, name: str = "m.key") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _config(tmp_path: Path, masking: str) -> Path:
    path = tmp_path / "phigate.yaml"
    path.write_text(BASE.format(verifier=VERIFIER) + masking, encoding="utf-8")
    return path


def test_generated_key_files_are_owner_only_and_never_overwritten(tmp_path: Path) -> None:
    path = generate_key_file(tmp_path / "keys" / "masking.key")
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(load_key(path).secret) == KEY_BYTES
    with pytest.raises(MaskingKeyError, match="already exists"):
        generate_key_file(path)


def test_base64_and_hex_keys(tmp_path: Path) -> None:
    assert parse_key(base64.b64encode(KEY) + b"\n", "k") == KEY
    assert parse_key(KEY.hex().encode() + b"\n", "k") == KEY
    for bad in (b"", b"short", base64.b64encode(KEY[:16]), "ключ".encode(), b"!!!!" * 20):
        with pytest.raises(MaskingKeyError):
            parse_key(bad, "k")


def test_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = _key_file(tmp_path, base64.b64encode(KEY), 0o644)
    with pytest.raises(MaskingKeyError, match="chmod 600"):
        load_key(path)


def test_domains_give_unrelated_keys() -> None:
    key = HashKey(KEY)
    assert key.for_domain("clinic") != key.for_domain("billing")
    assert key.for_domain("clinic") == HashKey(KEY).for_domain("clinic")
    assert key.for_domain("clinic") != HashKey(bytes(KEY_BYTES)).for_domain("clinic")
    assert repr(KEY) not in repr(key) and KEY.hex() not in repr(key)


def test_config_reads_the_key_and_domains(tmp_path: Path) -> None:
    _key_file(tmp_path, base64.b64encode(KEY))
    settings = load_config(_config(tmp_path, "masking:\n  hash_key_file: m.key\n"
                                             "  hash_domains: {clinic: care}\n"), environ=ENV)
    assert settings.masking is not None and settings.masking.hash_key is not None
    assert settings.masking.hash_key.secret == KEY
    assert settings.masking.domain("clinic") == "care"
    assert settings.masking.domain("billing") == "billing"
    assert repr(KEY) not in repr(settings)


@pytest.mark.parametrize(("masking", "mode", "line", "key", "why"), [
    ("masking:\n  hash_key_file: missing.key\n", 0o600, 12, "masking.hash_key_file",
     "cannot read"),
    ("masking:\n  hash_key_file: m.key\n", 0o640, 12, "masking.hash_key_file", "chmod 600"),
    ("masking:\n  hash_key_file: short.key\n", 0o600, 12, "masking.hash_key_file",
     "at least 32"),
    ("masking:\n  hash_key: x\n", 0o600, 12, "masking.hash_key", "unknown key"),
    ("masking:\n  hash_domains: [clinic]\n", 0o600, 12, "masking.hash_domains",
     "must map"),
])
def test_mistakes_name_file_line_and_key(tmp_path: Path, masking: str, mode: int, line: int,
                                        key: str, why: str) -> None:
    _key_file(tmp_path, base64.b64encode(KEY), mode)
    _key_file(tmp_path, base64.b64encode(KEY[:8]), 0o600, "short.key")
    path = _config(tmp_path, masking)
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ=ENV)
    text = str(raised.value)
    assert text.startswith(f"{path}:{line}: {key}:"), text
    assert why in text and os.fsdecode(base64.b64encode(KEY)) not in text
