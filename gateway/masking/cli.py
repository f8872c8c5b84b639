"""``phigate keygen --masking-key PATH``: the masking wing's addition to ``keygen``.

Writes a new masking hash key (32 random bytes, base64, mode 0600, never over an existing
file) for ``masking.hash_key_file``. Hooked into ``keygen`` by ``gateway/cli.py``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

from .keys import MaskingKeyError, generate_key_file

EXIT_OK, EXIT_USAGE = 0, 2
Handler = Callable[[argparse.Namespace], int]


def extend_keygen(name: str, parser: argparse.ArgumentParser) -> None:
    """An ``extend`` callback for ``gateway.journal.cli.register``: adds ``--masking-key``."""
    if name != "keygen":
        return
    inner: Handler = parser.get_default("func")
    parser.add_argument("--masking-key", type=Path, metavar="PATH",
                        help="write a masking hash key (32 random bytes, base64, 0600)")
    parser.set_defaults(func=partial(_keygen, inner))


def _keygen(inner: Handler, args: argparse.Namespace) -> int:
    if args.masking_key is None:
        return inner(args)
    try:
        path = generate_key_file(args.masking_key)
    except (MaskingKeyError, OSError) as e:
        print(f"phigate: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {path} (masking hash key; keep secret, mode 0600)")
    if args.path is None and getattr(args, "recording_key", None) is None:
        return EXIT_OK
    return inner(args)
