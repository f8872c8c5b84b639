"""Tables exactly as psql 15 prints them (expected outputs captured from real psql -X -c)."""

from __future__ import annotations

import pytest

from gateway.recording.table import Header, format_table

N, T = True, False  # numeric (right-aligned) or not

CASES = [
    ([("a", N), ("bb", T)], [["1", "hello"]],
     [" a |  bb   ", "---+-------", " 1 | hello"]),
    ([("n", N), ("t", T), ("z", T)], [["12345", "x", None]],
     ["   n   | t | z ", "-------+---+---", " 12345 | x | "]),
    ([("m", T), ("k", N)], [["line1\nline two", "3"]],
     ["    m     | k ", "----------+---", " line1   +| 3", " line two | "]),
    ([("k", N), ("m", T)], [["3", "line1\nline two"]],
     [" k |    m     ", "---+----------", " 3 | line1   +", "   | line two"]),
    ([("u", T), ("j", T)], [["ü€", "日本"]],
     [" u  |  j   ", "----+------", " ü€ | 日本"]),
    ([("?column?", T)], [], [" ?column? ", "----------"]),
]


@pytest.mark.parametrize(("columns", "rows", "expected"), CASES)
def test_like_psql(columns: list[tuple[str, bool]], rows: list[list[str | None]],
                   expected: list[str]) -> None:
    assert format_table([Header(n, num) for n, num in columns], rows) == expected


def test_fitted_to_a_width() -> None:
    headers = [Header("id", True), Header("name"), Header("note")]
    rows = [["1", "averyveryverylongvalue", "abcdefghijklmnopqrstuvwxyz0123456789"]]
    lines = format_table(headers, rows, max_width=40)
    assert all(len(line) <= 40 for line in lines)
    assert lines[2] == "  1 | averyveryveryl… | abcdefghijklmn…"
    assert format_table(headers, rows)[2].endswith("abcdefghijklmnopqrstuvwxyz0123456789")
