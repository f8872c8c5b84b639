"""CPU of the relay per statement, in process: framing, bookkeeping, hooks and journal, no sockets.

Builds the production hook chain (``gateway.service.build_hooks``) against a throwaway
PostgreSQL initialised with ``pgbench -i`` (the policy engine reads its catalog), starts
``--sessions`` relays (``gateway.proxy.relay.Relay``) whose two sockets are in-memory
transports, and drives them as pgbench ``-S`` would at that many clients: each round every
client sends one statement (simple: a Query; extended: Parse, Bind, Describe, Execute, Sync;
update: an UPDATE as a Query, which runs only once its entry is written),
the event loop turns once (the journal writes the tick's batch), and every upstream answers
with the bytes PostgreSQL sends (RowDescription, DataRow, CommandComplete, ReadyForQuery;
extended: ParseComplete and BindComplete first). Every answer must reach its client whole.

What it leaves out is the kernel (socket sends and reads, epoll), so the figure is the
gateway's Python per statement: what this issue can cut. ``--hooks none`` runs the relay
alone, ``--durability`` picks the journal's mode (``fsync`` adds the disk thread, whose CPU
``process_time`` counts too).

Deterministic counts: ``--callgrind`` runs each child under ``valgrind --tool=callgrind``
twice (``--statements`` and twice that) and prints instructions per statement from the
difference, which no other process on the machine can disturb. ``--profile`` prints a
cProfile of the measured statements. ``--baseline DIR`` runs the same from another source
tree (e.g. ``git archive main | tar -x -C DIR``), interleaved round by round.

    .venv/bin/python bench/relay_micro.py [--modes simple,extended] [--hooks all,none]
        [--sessions 8] [--statements 4000] [--rounds 3] [--callgrind] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.hook_chain import write_config  # noqa: E402
from bench.pgbench import prepare_cluster, remove_tree  # noqa: E402
from gateway.demo.tempcluster import TempCluster  # noqa: E402

# The child: run inside the tree under test (ROOT of that tree is first on sys.path).
CHILD = r'''
import asyncio, cProfile, gc, json, os, pstats, random, struct, sys, time
sys.path.insert(0, os.getcwd())
from gateway.settings.config import load_config
from gateway.service import build_hooks, open_journal
from gateway.ops.monitoring import Monitoring
from gateway.proxy.cancel import UpstreamKey
from gateway.proxy.hooks import HookChain, SessionInfo
from gateway.proxy.pipes import Pipe
from gateway.proxy.relay import Relay

config, statements, mode, hooks_kind, sessions, profile = (
    sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]),
    sys.argv[6] == "1")


class Sink(asyncio.Transport):
    """A socket's transport that counts what the relay writes and feeds what it reads."""
    def __init__(self):
        super().__init__()
        self.written = 0
        self.protocol = None
    def write(self, data):
        self.written += len(data)
    def is_closing(self):
        return False
    def can_write_eof(self):
        return True
    def write_eof(self):
        pass
    def close(self):
        pass
    def set_protocol(self, protocol):
        self.protocol = protocol
    def get_protocol(self):
        return self.protocol or asyncio.Protocol()
    def pause_reading(self):
        pass
    def resume_reading(self):
        pass


def frame(kind, body):
    return kind + struct.pack("!i", len(body) + 4) + body


def cstr(text):
    return text.encode() + b"\0"


def query(sql):
    return frame(b"Q", cstr(sql))


def extended(sql, value):
    parse = frame(b"P", cstr("") + cstr(sql) + struct.pack("!h", 0))
    bind = frame(b"B", cstr("") + cstr("") + struct.pack("!hh", 0, 1)
                 + struct.pack("!i", len(value)) + value + struct.pack("!h", 0))
    return (parse + bind + frame(b"D", b"P" + cstr("")) + frame(b"E", cstr("") + b"\0\0\0\0")
            + frame(b"S", b""))


ROW_DESCRIPTION = frame(b"T", struct.pack("!h", 1) + cstr("abalance")
                        + struct.pack("!ihihih", 16397, 2, 23, 4, -1, 0))
SIMPLE_ANSWER = (ROW_DESCRIPTION + frame(b"D", struct.pack("!hi", 1, 4) + b"-123")
                 + frame(b"C", cstr("SELECT 1")) + frame(b"Z", b"I"))
UPDATE_ANSWER = frame(b"C", cstr("UPDATE 1")) + frame(b"Z", b"T")
EXTENDED_ANSWER = frame(b"1", b"") + frame(b"2", b"") + SIMPLE_ANSWER


async def main():
    settings = load_config(config)
    journal = await open_journal(settings)
    hooks = [] if hooks_kind == "none" else build_hooks(settings, journal, Monitoring(settings))
    chain = HookChain(hooks)
    random.seed(1)
    aids = [random.randint(1, 100000) for _ in range(1000)]
    if mode == "simple":
        requests = [query(f"SELECT abalance FROM pgbench_accounts WHERE aid = {a};")
                    for a in aids]
        answer = SIMPLE_ANSWER
    elif mode == "update":  # a write: strict write-ahead, its entry before it runs
        requests = [query(f"UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = {a};")
                    for a in aids]
        answer = UPDATE_ANSWER
    else:
        requests = [extended("SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
                             str(a).encode()) for a in aids]
        answer = EXTENDED_ANSWER
    pairs = []
    tasks = []
    for s in range(sessions):
        info = SessionInfo(f"s{s}", "alice", frozenset(), "127.0.0.1", 5000 + s, "bench",
                           "pgbench", None, started_at=time.time())
        await chain.session_started(info)
        client, upstream = Sink(), Sink()
        relay = Relay(info, Pipe(client), Pipe(upstream), chain,
                      UpstreamKey("127.0.0.1", 1, 1, b"\0\0\0\1"), max_message_size=1 << 20)
        tasks.append(asyncio.create_task(relay.run(), name=f"relay-{s}"))
        pairs.append((client, upstream))
    await asyncio.sleep(0)
    sleep = asyncio.sleep
    writer = journal._writer  # a private attribute, read only to model the disk thread's turns

    async def rounds(count, start):
        for i in range(start, start + count):
            request = requests[i % 1000]
            for client, _ in pairs:
                client.protocol.data_received(request)
            await sleep(0)  # the journal writes this tick's batch (write mode: inline)
            for _, upstream in pairs:
                upstream.protocol.data_received(answer)
            await sleep(0)
            if writer._handed != writer._served:
                # The loop would wait in epoll for the network meanwhile, without the GIL:
                # the disk thread runs then, not 5 ms later (the GIL's switch interval).
                time.sleep(50e-6)

    async def settled(expected):
        for _ in range(1000):
            if all(c.written == expected for c, _ in pairs):
                return
            await sleep(0.001)
        raise SystemExit(f"answers held: {[c.written for c, _ in pairs]} != {expected}")

    base = pairs[0][0].written
    warm = 500
    await rounds(warm, 0)
    await settled(base + warm * len(answer))
    collections = [s["collections"] for s in gc.get_stats()]
    gc_spent = [0.0]
    gc_clock = [0.0]
    def gc_timer(phase, info):
        if phase == "start":
            gc_clock[0] = time.process_time()
        else:
            gc_spent[0] += time.process_time() - gc_clock[0]
    gc.callbacks.append(gc_timer)
    started = time.process_time()
    await rounds(statements // sessions, warm)
    spent = time.process_time() - started
    gc.callbacks.remove(gc_timer)
    collections = [s["collections"] - c for s, c in zip(gc.get_stats(), collections)]
    done = warm + statements // sessions
    await settled(base + done * len(answer))
    measured = statements // sessions * sessions
    # The garbage collector's share, and its collections of the older generations.
    result = {"us_per_stmt": spent / measured * 1e6, "gc_us": gc_spent[0] / measured * 1e6,
              "gc_older": sum(collections[1:])}
    if profile:
        pr = cProfile.Profile(time.process_time)
        pr.enable()
        await rounds(statements // sessions, done)
        pr.disable()
        stats = pstats.Stats(pr, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(40)
        by_file = {}
        for (file, _, _), (_, _, own, _, _) in stats.stats.items():
            key = file.replace(os.getcwd() + "/", "")
            by_file[key] = by_file.get(key, 0.0) + own
        total = sum(by_file.values())
        for key, own in sorted(by_file.items(), key=lambda kv: -kv[1])[:30]:
            print(f"{100 * own / total:5.1f}%  {key}", file=sys.stderr)
    for client, _ in pairs:
        client.protocol.eof_received()
    await asyncio.gather(*tasks)
    await journal.close()
    print(json.dumps(result))

if os.environ.get("BENCH_ASYNCIO"):
    asyncio.run(main())
else:
    import uvloop
    uvloop.run(main())
'''


def run_child(tree: Path, config: Path, statements: int, mode: str, hooks: str, sessions: int,
              password: str, *, profile: bool = False, callgrind: Path | None = None
              ) -> dict[str, float]:
    python = tree / ".venv" / "bin" / "python"
    env = {**os.environ, "BENCH_DB_PASSWORD": password, "PYTHONPATH": str(tree),
           "PYTHONHASHSEED": "0"}
    command = [str(python if python.exists() else sys.executable), "-c", CHILD, str(config),
               str(statements), mode, hooks, str(sessions), "1" if profile else "0"]
    if callgrind is not None:
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={callgrind}",
                   "--dump-instr=no", *command]
    proc = subprocess.run(command, cwd=tree, capture_output=True, text=True, env=env,
                          timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"bench child failed in {tree}:\n{proc.stderr[-3000:]}")
    if profile:
        print(proc.stderr, file=sys.stderr)
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    if callgrind is not None:
        result["instructions"] = _callgrind_total(callgrind)
    return result


def _callgrind_total(path: Path) -> float:
    for line in path.read_text().splitlines():
        if line.startswith("summary:") or line.startswith("totals:"):
            return float(line.split()[1])
    raise SystemExit(f"no totals in {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--modes", type=lambda s: s.split(","), default=["simple", "extended"])
    parser.add_argument("--hooks", type=lambda s: s.split(","), default=["all", "none"])
    parser.add_argument("--durability", choices=("write", "fsync"), default="write")
    parser.add_argument("--baseline", type=Path, help="another source tree to compare (A/B)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--callgrind", action="store_true",
                        help="instructions per statement under valgrind (one round)")
    args = parser.parse_args()
    trees = [("this", ROOT)] + ([("base", args.baseline.resolve())] if args.baseline else [])
    workdir = Path(tempfile.mkdtemp(prefix="phigate-relaybench-"))
    password = secrets.token_urlsafe(18)
    results: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    rounds = 1 if args.callgrind else args.rounds
    try:
        with TempCluster() as cluster:
            prepare_cluster(cluster, password)
            for round_ in range(rounds):
                for mode in args.modes:
                    for hooks in args.hooks:
                        for name, tree in trees:
                            def config(n: int, name: str = name, mode: str = mode,
                                       hooks: str = hooks, round_: int = round_) -> Path:
                                return write_config(
                                    workdir / f"{name}-{mode}-{hooks}-{round_}-{n}",
                                    cluster.port, password, durability=args.durability)
                            results.setdefault((name, mode, hooks), []).append(_measure(
                                args, tree, config, mode, hooks, password, workdir))
    finally:
        remove_tree(workdir)
    load = os.getloadavg()
    what = "instructions" if args.callgrind else "µs CPU"
    print(f"{what} per statement, {args.sessions} sessions, journal {args.durability}, "
          f"medians of {rounds} rounds (load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f})")
    for (name, mode, hooks), found in results.items():
        parts = "  ".join(f"{k} {statistics.median(r[k] for r in found):,.1f}"
                          for k in found[0])
        print(f"  {name:>5} {mode:>8} hooks={hooks:<4}: {parts}")
    return 0


def _measure(args: argparse.Namespace, tree: Path, config: Callable[[int], Path], mode: str,
             hooks: str, password: str, workdir: Path) -> dict[str, float]:
    """One round: CPU per statement, or (``--callgrind``) instructions per statement from two
    runs of different lengths, each with a fresh journal."""
    if not args.callgrind:
        return run_child(tree, config(0), args.statements, mode, hooks, args.sessions,
                         password, profile=args.profile)
    small, large = (run_child(tree, config(n), n, mode, hooks, args.sessions, password,
                              callgrind=workdir / f"cg.{n}.out")
                    for n in (args.statements, 2 * args.statements))
    per = (large["instructions"] - small["instructions"]) / args.statements
    return {"instructions": per, "us_per_stmt": large["us_per_stmt"]}


if __name__ == "__main__":
    raise SystemExit(main())
