"""YAML loading that remembers where every key came from.

``safe_load`` semantics (no arbitrary objects), but every mapping becomes a
:class:`Located` dict that knows the line of each of its keys, so validation
errors can say ``file:line: key.path: message``.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import ConfigError


class Located(dict[str, Any]):
    """A mapping from YAML that remembers the line of itself and of each key."""

    line: int
    key_lines: dict[str, int]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings are :class:`Located` (lines are 1-based)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> Located:
    loader.flatten_mapping(node)
    mapping = Located()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            key = str(key)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = key_node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML text; syntax errors become ConfigError with the file and line."""
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"invalid YAML: {e.problem or e}", file=source, line=line) from e
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {e}", file=source) from e


def line_of(mapping: object, key: str | None = None) -> int | None:
    """The line of ``key`` in ``mapping`` (or of the mapping itself), when known."""
    if not isinstance(mapping, Located):
        return None
    if key is not None and key in mapping.key_lines:
        return mapping.key_lines[key]
    return mapping.line
