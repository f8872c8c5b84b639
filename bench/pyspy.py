"""Where ``phigate serve`` spends its time under ``pgbench -S``: a py-spy profile, by function.

    pip install py-spy      # into the venv; or: pip install -e '.[bench]'
    .venv/bin/python bench/pyspy.py --target phigate-write --modes simple,extended \
        --clients 8 --seconds 8 --out /tmp/prof

Starts a throwaway PostgreSQL and one gateway variant of ``bench/pgbench.py`` (``phigate``,
``phigate-write``, ...), warms it up, then samples it with ``py-spy record`` while pgbench runs,
once per mode. Writes py-spy's collapsed stacks (``<out>/<target>.<mode>.txt``; flame graphs:
``py-spy`` ``--format flamegraph``, or any collapsed-stack viewer) and prints the functions with
the most samples, self and inclusive, and the proxy CPU per statement of the sampled run.

py-spy samples wall time of running threads: a thread preempted inside a system call (a socket
send that woke the peer) counts as busy, so sends look dearer than their CPU; ``perf record``
or the bench's CPU per statement are the CPU figures.
"""

from __future__ import annotations

import argparse
import collections
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pgbench as pb

from gateway.demo.tempcluster import TempCluster

_LINE = re.compile(r":\d+\)$")


def summarise(collapsed: Path, top: int) -> str:
    """The ``top`` functions by self and by inclusive samples (line numbers merged)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    if not total:
        return "no samples"
    rows = [f"{total} samples", "self:"]
    rows += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    rows.append("inclusive:")
    rows += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(rows)


def profile(args: argparse.Namespace) -> None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="phigate-profile-"))
    workdir.chmod(0o711)
    try:
        with TempCluster() as cluster:
            bench = pb.Bench(cluster, workdir, secrets.token_urlsafe(18),
                             secrets.token_urlsafe(18))
            pb.prepare_cluster(cluster, bench.upstream_password)
            target = pb.make_target(args.target, bench, args.clients)
            with pb.running([target]):
                pid = target.cpu_pid()
                assert pid is not None
                for mode in args.modes:
                    pb.run_pgbench(target, mode, args.clients, 2)  # warm the caches
                    out = args.out / f"{args.target}.{mode}.txt"
                    sampler = subprocess.Popen(
                        [spy, "record", "--pid", str(pid), "--rate", str(args.rate),
                         "--duration", str(args.seconds + 1), "--format", "raw",
                         "--nonblocking", "--output", str(out)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    cell = pb.run_pgbench(target, mode, args.clients, args.seconds)
                    sampler.wait()
                    per = (f"{cell.proxy_cpu * 1e6 / cell.tps:.0f} µs CPU per statement"
                           if cell.tps and cell.proxy_cpu else cell.error)
                    print(f"== {args.target} {mode} c={args.clients}: {cell.tps or 0:.0f} tps, "
                          f"{per}; {out}")
                    print(summarise(out, args.top) if out.exists() else "py-spy wrote nothing")
    finally:
        pb.remove_tree(workdir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="phigate-write",
                        help="a gateway variant of bench/pgbench.py (default phigate-write)")
    parser.add_argument("--modes", type=lambda s: s.split(","), default=["simple"])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=8, help="sampled per mode")
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--top", type=int, default=25, help="functions listed")
    parser.add_argument("--out", type=Path, default=Path("profiles"))
    profile(parser.parse_args())


if __name__ == "__main__":
    main()
