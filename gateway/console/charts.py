"""Server-rendered SVG charts: no charting library, nothing fetched by the browser.

Each function returns markup (escaped labels) sized by the page's CSS. Driven by ``pages``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 720, 180, 28


def fill_hours(rows: Iterable[Any], since_hour: str, count: int
               ) -> list[tuple[str, Any | None]]:
    """One (hour, row or None) per hour from ``since_hour``: gaps are shown as zero."""
    by_hour = {row["hour"]: row for row in rows}
    start = datetime.strptime(since_hour, "%Y-%m-%dT%H")
    hours = [(start + timedelta(hours=i)).strftime("%Y-%m-%dT%H") for i in range(count)]
    return [(hour, by_hour.get(hour)) for hour in hours]


def bars(points: Sequence[tuple[str, int]], label: str, *, tone: str = "main",
         limit: int | None = None) -> Markup:
    """A column chart of hourly values; x labels every six hours (UTC); ``limit`` is drawn
    as a dashed line (a budget per hour)."""
    top = max(max((v for _, v in points), default=0), limit or 0) or 1
    inner_w, inner_h = WIDTH - PAD - 8, HEIGHT - PAD - 10
    step = inner_w / max(len(points), 1)
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="{escape(label)} per hour">',
             f'<text class="axis" x="{PAD - 4}" y="16" text-anchor="end">{top:,}</text>',
             f'<line class="grid" x1="{PAD}" y1="10" x2="{WIDTH - 8}" y2="10"/>',
             f'<line class="base" x1="{PAD}" y1="{10 + inner_h}" x2="{WIDTH - 8}" '
             f'y2="{10 + inner_h}"/>']
    for i, (hour, value) in enumerate(points):
        height = inner_h * value / top
        x = PAD + i * step
        parts.append(f'<rect class="bar {tone}" x="{x + 1:.1f}" y="{10 + inner_h - height:.1f}" '
                     f'width="{max(step - 2, 1):.1f}" height="{height:.1f}">'
                     f'<title>{escape(hour)}:00 UTC — {value:,} {escape(label)}</title></rect>')
        if hour.endswith(("T00", "T06", "T12", "T18")):
            text = hour[5:10] if hour.endswith("T00") else hour[11:] + "h"
            parts.append(f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 8}">{escape(text)}</text>')
    if limit is not None:
        y = 10 + inner_h - inner_h * limit / top
        parts.append(f'<line class="limit" x1="{PAD}" y1="{y:.1f}" x2="{WIDTH - 8}" '
                     f'y2="{y:.1f}"/><text class="axis limit" x="{WIDTH - 10}" '
                     f'y="{y - 4:.1f}" text-anchor="end">budget {limit:,}/h</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def hbars(points: Sequence[tuple[str, int]], *, marks: set[str] | None = None) -> Markup:
    """Horizontal bars with their labels; ``marks`` are drawn as PHI."""
    if not points:
        return Markup('<p class="empty">Nothing yet.</p>')
    top = max(v for _, v in points) or 1
    row_h, label_w = 26, 170
    height = row_h * len(points) + 4
    parts = [f'<svg class="chart hbars" viewBox="0 0 {WIDTH} {height}" role="img">']
    for i, (name, value) in enumerate(points):
        y = 4 + i * row_h
        width = (WIDTH - label_w - 80) * value / top
        tone = "phi" if marks and name in marks else "main"
        parts.append(f'<text class="label" x="{label_w - 8}" y="{y + 16}" '
                     f'text-anchor="end">{escape(name)}</text>'
                     f'<rect class="bar {tone}" x="{label_w}" y="{y + 3}" '
                     f'width="{max(width, 1):.1f}" height="{row_h - 8}" rx="2"/>'
                     f'<text class="value" x="{label_w + width + 6:.1f}" y="{y + 16}">'
                     f'{value:,}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
