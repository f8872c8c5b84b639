"""Sizes and ranges of the PostgreSQL v3 wire format, shared by the decoder and the encoder."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final, TypeAlias

from .errors import ProtocolError

INT8 = struct.Struct("!b")
INT16 = struct.Struct("!h")
UINT16 = struct.Struct("!H")
INT32 = struct.Struct("!i")
UINT32 = struct.Struct("!I")
HEADER = struct.Struct("!cI")

INT16_MIN, INT16_MAX = -(2**15), 2**15 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
UINT16_MAX = 2**16 - 1
UINT32_MAX = 2**32 - 1
# A length word is an Int32 that counts itself.
MAX_FRAME_LENGTH: Final = INT32_MAX
UNSUPPORTED_PROTOCOL: Final = "0A000"  # feature_not_supported, as PostgreSQL answers

Buffer: TypeAlias = bytes | bytearray | memoryview


def check_formats(formats: tuple[int, ...], values: tuple[Any, ...],
                  fail: Callable[[str], ProtocolError]) -> None:
    """One format code per value, or a single code for all, or none (all text)."""
    if len(formats) > 1 and len(formats) != len(values):
        raise fail(f"{len(formats)} format codes for {len(values)} values")
