"""Byte sizes in policy files, and the byte limit a rule gets when it names only ``max_rows``.

``parse_size("500KiB")`` reads the sizes rules give for ``max_bytes`` and
``max_phi_bytes_per_hour``: a whole number with an optional unit B, KiB, MiB, GiB (powers of
1024; kB/MB/GB are accepted as the same, as PostgreSQL's own settings do).

A rule with ``max_rows`` but no ``max_bytes`` gets a derived byte limit, so that one row cannot
carry a whole table (an aggregate or a format the parser cannot see)::

    derived = max(FLOOR_BYTES, HEADROOM * max_rows * sum(row width of each PHI table touched))

A table's row width is what one of its rows takes in a DataRow: for each column
``max(avg_width, 8) + 4`` (the length word; 8 leaves room for numbers and dates printed as
text) plus 2, from ``pg_stats`` as the gateway reads it at connect (``ROW_WIDTHS_SQL``); a table
without statistics (never analysed) counts ``DEFAULT_ROW_WIDTH``. With ``HEADROOM`` 2 a normal
result of ``max_rows`` rows fits; the same table folded into one row by a statement of
``2 * max_rows`` rows or more does not. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

FLOOR_BYTES = 64 * 1024  # never below this: small tables and a few wide values still fit
HEADROOM = 2
DEFAULT_ROW_WIDTH = 256  # bytes per row of a table pg_stats knows nothing about

ROW_WIDTHS_SQL = """\
SELECT schemaname, tablename, sum(greatest(avg_width, 8) + 4) + 2
  FROM pg_catalog.pg_stats GROUP BY schemaname, tablename
"""

_UNITS = {"": 1, "b": 1, "kib": 1024, "kb": 1024, "mib": 1024**2, "mb": 1024**2,
          "gib": 1024**3, "gb": 1024**3}
_SIZE = re.compile(r"\s*(\d+)\s*([a-zA-Z]*)\s*")


def parse_size(value: object) -> int:
    """``500KiB`` → 512000; an int is bytes. ValueError says what is wrong."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 500KiB or 2MiB")
    if isinstance(value, int):
        number, unit = value, ""
    else:
        match = _SIZE.fullmatch(str(value))
        if not match:
            raise ValueError(f"bad size {value!r}: expected e.g. 500KiB, 2MiB or 1048576")
        number, unit = int(match.group(1)), match.group(2).lower()
    if unit not in _UNITS:
        raise ValueError(f"bad size unit in {value!r}: use B, KiB, MiB or GiB")
    size = number * _UNITS[unit]
    if size <= 0:
        raise ValueError(f"size must be positive, got {value!r}")
    return size


def build_row_widths(rows: Iterable[tuple[str, str, str]]) -> Mapping[str, int]:
    """Rows of ``ROW_WIDTHS_SQL`` → {"schema.table": width, "table": widest of that name}."""
    out: dict[str, int] = {}
    for schema, table, width in rows:
        value = int(float(width))
        out[f"{schema}.{table}".lower()] = value
        bare = table.lower()
        out[bare] = max(out.get(bare, 0), value)
    return out


def derived_max_bytes(max_rows: int, tables: Iterable[str], widths: Mapping[str, int]) -> int:
    """The byte limit of a rule that sets ``max_rows`` only (see the module docstring)."""
    width = sum(_width(name, widths) for name in dict.fromkeys(tables)) or DEFAULT_ROW_WIDTH
    return max(FLOOR_BYTES, HEADROOM * max_rows * width)


def _width(name: str, widths: Mapping[str, int]) -> int:
    key = name.lower()
    parts = key.split(".")
    found = widths.get(key) or widths.get(".".join(parts[-2:])) or widths.get(parts[-1])
    return found or DEFAULT_ROW_WIDTH
