"""orjson writes exactly the canonical bytes: the pure encoder is the reference.

The chain hashes lines as stored, so any stable encoder would verify; but the journal's
format is "canonical JSON" and a line written with orjson must be the line the standard
library would have written. Hypothesis searches the JSON values entries can hold.
"""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.journal import canonical
from gateway.journal.canonical import encode_line, encode_line_pure

_scalars = (st.none() | st.booleans() | st.integers()
            | st.floats(allow_nan=False, allow_infinity=False) | st.text())
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(), inner, max_size=4), max_leaves=20)
_entries = st.dictionaries(st.text() | st.integers(), _values, max_size=8)


def test_orjson_is_in_use() -> None:
    # CI installs it (a project dependency); without it the pure encoder writes every line.
    assert canonical._orjson is orjson


@given(_entries)
@settings(max_examples=600, deadline=None)
@example({"duration_ms": 1.5e-05, "n": 2**64, "text": "\ud800", "s": "e-1 0.0000"})
@example({"x": 1e-06, "y": -0.0, "z": 1e16, "big": -(2**63), "bigger": 2**63})
@example({"sep": "\u2028\u2029\x7f\x00\x1f\"\\", "emoji": "😀", 1: "int key"})
def test_orjson_lines_are_byte_identical_to_the_reference(entry: dict[object, object]) -> None:
    try:
        reference = encode_line_pure(entry)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # e.g. int and str keys together cannot be sorted
        with pytest.raises((TypeError, ValueError)):
            encode_line(entry)  # type: ignore[arg-type]
        return
    assert encode_line(entry) == reference  # type: ignore[arg-type]


@given(st.dictionaries(st.text(), _values, max_size=8))
@settings(max_examples=200, deadline=None)
def test_lines_are_canonical_json(entry: dict[str, object]) -> None:
    line = encode_line(entry)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and b"\0" not in line
    assert json.loads(line) == entry


def test_journal_entry_shapes_take_the_fast_path() -> None:
    statement = {"session": "9f2c", "n": 12, "protocol": "extended", "sql": "SELECT 1 - $1",
                 "statement_name": "", "parameters": ["hmac-sha256:ab"], "decision": "allow",
                 "tables": ["public.patients"], "seq": 7, "time": "2026-12-02T21:00:00.000001Z",
                 "type": "statement", "prev": "ab" * 32}
    outcome = {"session": "9f2c", "n": 12, "rows": 1, "bytes": 120, "duration_ms": 0.237,
               "tags": ["SELECT 1"], "sqlstate": None}
    for entry in (statement, outcome):
        assert encode_line(entry) == orjson.dumps(
            entry, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
        assert encode_line(entry) == encode_line_pure(entry)


@pytest.mark.parametrize("value", [b"bytes", {1, 2}, object()])
def test_unencodable_values_are_refused(value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        encode_line({"v": value})
