"""Result tables laid out exactly as psql's default ``aligned`` format (border 1).

Headers centred, numeric columns right-aligned, others left-aligned with the
last column unpadded, NULL as an empty string, multi-line values continued
with ``+`` as psql marks them. Optionally fitted to a width: the widest
columns are cut (ending in ``…``) until the table fits, so a replay in a
terminal stays readable; ``--full`` turns that off. Pure text in, lines out;
driven by ``replay``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

ELLIPSIS = "…"
MIN_CUT_WIDTH = 8  # a cut column keeps at least this many characters


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    numeric: bool = False


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: wide East Asian characters count twice."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else
               2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def cut(text: str, width: int) -> str:
    if display_width(text) <= width:
        return text
    out, used = [], 0
    for char in text:
        w = display_width(char)
        if used + w > width - 1:
            break
        out.append(char)
        used += w
    return "".join(out) + ELLIPSIS


def format_table(headers: Sequence[Header], rows: Sequence[Sequence[str | None]],
                 max_width: int | None = None) -> list[str]:
    """The table's lines, header and rule included, without psql's "(N rows)" footer."""
    if not headers:
        return ["--"]
    cells = [[(value or "").split("\n") for value in row] for row in rows]
    widths = [display_width(h.name) for h in headers]
    for row in cells:
        for i, lines in enumerate(row[:len(widths)]):
            widths[i] = max(widths[i], *(display_width(line) for line in lines))
    if max_width is not None:
        widths = _fit(widths, max_width)
        cells = [[[cut(line, widths[i]) for line in lines] for i, lines in enumerate(row)]
                 for row in cells]
    names = [cut(h.name, w) for h, w in zip(headers, widths, strict=True)]
    out = [_header_line(names, widths), "+".join("-" * (w + 2) for w in widths)]
    for row in cells:
        out.extend(_row_lines(row, headers, widths))
    return out


def _fit(widths: list[int], max_width: int) -> list[int]:
    """Shrink the widest columns until the table (3 columns of borders each) fits."""
    widths = list(widths)
    while sum(widths) + 3 * len(widths) - 1 > max_width:
        widest = max(range(len(widths)), key=lambda i: widths[i])
        if widths[widest] <= MIN_CUT_WIDTH:
            break  # cannot fit without making every value unreadable: let it wrap
        widths[widest] -= 1
    return widths


def _header_line(names: list[str], widths: list[int]) -> str:
    parts = []
    for name, width in zip(names, widths, strict=True):
        space = width - display_width(name)
        parts.append(" " * (space // 2) + name + " " * ((space + 1) // 2))
    return " " + " | ".join(parts) + " "


def _row_lines(row: list[list[str]], headers: Sequence[Header],
               widths: list[int]) -> list[str]:
    height = max((len(lines) for lines in row), default=1)
    last = len(widths) - 1
    out = []
    for k in range(height):
        line = ""
        for i, width in enumerate(widths):
            lines = row[i] if i < len(row) else [""]
            text = lines[k] if k < len(lines) else ""
            more = k < len(lines) - 1
            pad = " " * (width - display_width(text))
            cell = pad + text if headers[i].numeric else text + pad
            if i == last:
                # psql pads the last column only where a "+" follows or the text is right-aligned,
                # and not at all on lines where its value has no more lines.
                if k >= len(lines):
                    cell = ""
                elif not (more or headers[i].numeric):
                    cell = text
                line += " " + cell + ("+" if more else "")
            else:
                line += " " + cell + ("+" if more else " ") + "|"
        out.append(line)
    return out
