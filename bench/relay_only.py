"""Run the gateway's protocol layer alone — no policy, journal or recorder hooks.

For benchmarks only: ``phigate serve`` always runs with the journal and the
policy engine. This measures what the relay itself costs, so its figures can
be compared with pgbouncer and a bare byte relay (``bench/pgbench.py``).

    python bench/relay_only.py -c phigate.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.proxy.server import Gateway  # noqa: E402
from gateway.settings.config import load_config  # noqa: E402


async def serve(config: str) -> None:
    gateway = Gateway(load_config(config), hooks=[])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await gateway.start()
    await stop.wait()
    await gateway.drain(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.config))
    else:
        uvloop.run(serve(args.config))


if __name__ == "__main__":
    main()
