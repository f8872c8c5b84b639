"""pgbench -S through PHIGate with session recording off and on, and recording bytes per statement.

Owns one run: a throwaway PostgreSQL initialised by ``pgbench -i``, the ``phigate`` and
``phigate+rec`` gateway variants of ``bench/pgbench.py`` (recording with ``capture_rows: 100``),
cells interleaved off/on for every mode and client count, repeated ``--rounds`` times so drift
in the machine's load hits both alike, and the cleanup. Bytes per statement is the growth of
the recordings directory during a cell divided by the statements pgbench ran (one per -S
transaction), measured after the cell's sessions ended and their recordings were flushed.
Target: on/off TPS >= 0.85.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.pgbench import (
    GATEWAY_VARIANTS,
    Bench,
    GatewayTarget,
    environment,
    prepare_cluster,
    remove_tree,
    run_pgbench,
    running,
)
from gateway.demo.tempcluster import TempCluster

OFF, ON = "phigate", "phigate+rec"
SETTLE_S = 1.5  # sessions end, then the recorder flushes (interval 1 s) before we measure


@dataclass(frozen=True)
class Pair:
    mode: str
    clients: int
    off_tps: float
    on_tps: float
    off_cpu_us: float  # gateway CPU per transaction
    on_cpu_us: float
    bytes_per_statement: float


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(args: argparse.Namespace) -> list[Pair]:
    workdir = Path(tempfile.mkdtemp(prefix="phigate-bench-rec-"))
    pairs: list[Pair] = []
    try:
        with TempCluster() as cluster:
            bench = Bench(cluster, workdir, secrets.token_urlsafe(18), secrets.token_urlsafe(18))
            prepare_cluster(cluster, bench.upstream_password)
            off, on = (GatewayTarget(bench, GATEWAY_VARIANTS[n]) for n in (OFF, ON))
            recordings = on.dir / "recordings"
            with running([off, on]):
                for round_ in range(args.rounds):
                    for mode in args.modes:
                        for clients in args.clients:
                            pairs.append(cell_pair(off, on, recordings, mode, clients, args,
                                                   on_first=round_ % 2 == 1))
    finally:
        remove_tree(workdir)
    return pairs


def cell_pair(off: GatewayTarget, on: GatewayTarget, recordings: Path, mode: str,
              clients: int, args: argparse.Namespace, *, on_first: bool) -> Pair:
    """One off and one on run; every other round the order flips, so that neither variant
    always runs on a warmer (or more tired) machine."""
    if not on_first:
        baseline = run_pgbench(off, mode, clients, args.seconds)
    before = tree_bytes(recordings) if recordings.exists() else 0
    recorded = run_pgbench(on, mode, clients, args.seconds)
    time.sleep(SETTLE_S)
    grown = tree_bytes(recordings) - before
    if on_first:
        baseline = run_pgbench(off, mode, clients, args.seconds)
    if baseline.tps is None or recorded.tps is None:
        raise RuntimeError(f"pgbench failed: {baseline.error or recorded.error}")
    statements = recorded.tps * args.seconds
    pair = Pair(mode, clients, baseline.tps, recorded.tps,
                (baseline.proxy_cpu or 0.0) * 1e6 / baseline.tps,
                (recorded.proxy_cpu or 0.0) * 1e6 / recorded.tps, grown / statements)
    print(f"  {mode:>8} c={clients:<3} off {pair.off_tps:8.0f}  on {pair.on_tps:8.0f}  "
          f"ratio {pair.on_tps / pair.off_tps:.2f}  CPU {pair.off_cpu_us:.0f}/"
          f"{pair.on_cpu_us:.0f} µs/txn  {pair.bytes_per_statement:.0f} B/stmt",
          file=sys.stderr, flush=True)
    return pair


def report(pairs: Sequence[Pair]) -> str:
    lines = [f"{'mode':>8}  {'clients':>7}  {'off TPS':>8}  {'on TPS':>8}  {'on/off':>6}  "
             f"{'CPU µs/txn off':>14}  {'on':>4}  {'B/stmt':>6}"]
    for mode, clients in dict.fromkeys((p.mode, p.clients) for p in pairs):
        cell = [p for p in pairs if (p.mode, p.clients) == (mode, clients)]
        off = statistics.median(p.off_tps for p in cell)
        on = statistics.median(p.on_tps for p in cell)
        size = statistics.median(p.bytes_per_statement for p in cell)
        cpu_off = statistics.median(p.off_cpu_us for p in cell)
        cpu_on = statistics.median(p.on_cpu_us for p in cell)
        # The ratio of each interleaved pair, then their median: drift cancels within a pair.
        ratio = statistics.median(p.on_tps / p.off_tps for p in cell)
        lines.append(f"{mode:>8}  {clients:>7}  {off:8.0f}  {on:8.0f}  {ratio:6.2f}  "
                     f"{cpu_off:14.0f}  {cpu_on:4.0f}  {size:6.0f}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="pgbench -S: PHIGate with recording off vs on")
    parser.add_argument("--seconds", type=int, default=10, help="per cell (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs per cell (median)")
    parser.add_argument("--clients", type=lambda s: [int(v) for v in s.split(",")],
                        default=[1, 8], help="comma-separated client counts (default 1,8)")
    parser.add_argument("--modes", type=lambda s: s.split(","), default=["simple", "extended"],
                        help="pgbench -M values (default simple,extended)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"recording off/on, {args.rounds} rounds of {args.seconds}s cells: {environment()}",
          file=sys.stderr, flush=True)
    pairs = run(args)
    print(f"\npgbench -S, median of {args.rounds} rounds, {args.seconds}s per cell; "
          f"recording with capture_rows 100\n")
    print(report(pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
