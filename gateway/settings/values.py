"""Building blocks for reading the config: located sections, secrets and units.

``Section`` wraps one YAML mapping with its file and key path, so every
validation error says ``file:line: key.path: message``; the parsers in
``gateway/settings/config.py`` and the feature packages (alerts) build on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policies.yamlsource import line_of

from ..errors import ConfigError


@dataclass(frozen=True, slots=True)
class Secret:
    """A credential; its repr never shows the value."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('**********')"


class Section:
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

    def child(self, key: str) -> Section:
        if key not in self.data:
            raise self.error(None, f"missing required key {key!r}")
        value = self.data[key]
        if not isinstance(value, dict):
            raise self.error(key, "must be a mapping")
        return Section(value, self.file, self.key_path(key), self.base_dir)

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
