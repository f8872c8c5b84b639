"""Child process for the crash test: appends until killed, reporting each acknowledged seq.

Prints ``<seq> <token>`` on stdout (flushed) only after ``append`` returned, so
every line the parent reads is an entry the journal promised was durable.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from gateway.journal import Journal, JournalSettings


async def main(directory: Path, key: Path, run: str) -> None:
    settings = JournalSettings(dir=directory, signing_key=key, immutable=False,
                               segment_max_bytes=64 * 1024, checkpoint_interval_s=0.05)
    journal = await Journal.open(settings)
    out = sys.stdout

    async def writer(w: int) -> None:
        for i in range(1_000_000):
            token = f"{run}-{w}-{i}"
            seq = await journal.append("statement", {"token": token, "pad": "x" * (i % 300)})
            out.write(f"{seq} {token}\n")
            out.flush()
            journal.append_later("outcome", {"token": token})

    await asyncio.gather(*(writer(w) for w in range(8)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]))
