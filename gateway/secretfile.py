"""Writing a new secret file: mode 0600, never over an existing file (O_EXCL), synced.

Shared by the wings that make keys (``phigate keygen --recording-key``, ``--masking-key``);
each wraps ``FileExistsError`` in its own error.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_new_secret(path: Path, data: bytes) -> Path:
    """Create ``path`` (and its folder, 0700) holding ``data``; FileExistsError if it exists."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path
