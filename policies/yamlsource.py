"""YAML that remembers where everything was written: the one loader of config and policies.

``safe_load`` semantics (a SafeLoader subclass: no arbitrary objects), but every mapping is a
:class:`LocatedMap` and every sequence a :class:`LocatedList` that know their own line and the
line of each key or item, so validation errors can say ``file:line: key.path: message``.
Duplicate keys and non-scalar keys are syntax errors; keys become strings. Pure: callers read
the file and turn :class:`YamlSyntaxError` into their own error type.
"""

from __future__ import annotations

from typing import Any

import yaml


class YamlSyntaxError(Exception):
    """The text is not YAML this loader accepts; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class LocatedMap(dict[str, Any]):
    """A mapping that remembers the line of itself and of each of its keys."""

    line = 0
    key_lines: dict[str, int]


class LocatedList(list[Any]):
    """A sequence that remembers the line of itself and of each of its items."""

    line = 0
    item_lines: list[int]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences record line numbers."""


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> LocatedMap:
    loader.flatten_mapping(node)
    result = LocatedMap()
    result.line, result.key_lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
        if not isinstance(key, str | int | bool | float) or key is None:
            raise yaml.constructor.ConstructorError(None, None, "keys must be scalars",
                                                    key_node.start_mark)
        key = str(key)
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {result.key_lines[key]})",
                key_node.start_mark,
            )
        result[key] = loader.construct_object(value_node, deep=True)  # type: ignore[no-untyped-call]
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_seq(loader: _LineLoader, node: yaml.SequenceNode) -> LocatedList:
    result = LocatedList(loader.construct_object(child, deep=True)  # type: ignore[no-untyped-call]
                         for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def parse_located(text: str) -> Any:
    """YAML text → plain data whose mappings and sequences remember line numbers."""
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        raise YamlSyntaxError(f"invalid YAML: {e.problem or e}", line) from e
    except yaml.YAMLError as e:
        raise YamlSyntaxError(f"invalid YAML: {e}") from e


def key_line(data: Any, key: str, default: int | None = None) -> int | None:
    """The line a key of a mapping from ``parse_located`` was written on."""
    return getattr(data, "key_lines", {}).get(key, default)


def item_line(data: Any, index: int, default: int | None = None) -> int | None:
    """The line an item of a sequence from ``parse_located`` was written on."""
    lines = getattr(data, "item_lines", [])
    return lines[index] if 0 <= index < len(lines) else default


def line_of(mapping: object, key: str | None = None) -> int | None:
    """The line of ``key`` in ``mapping`` (or of the mapping itself), when known."""
    if not isinstance(mapping, LocatedMap):
        return None
    if key is not None and key in mapping.key_lines:
        return mapping.key_lines[key]
    return mapping.line
