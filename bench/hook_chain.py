"""CPU of the hook chain per statement, in process: what the relay's hooks cost without sockets.

Builds the production hook chain (``gateway.service.build_hooks``: policy, masking, journal,
metrics, and alerts when configured) against a throwaway PostgreSQL initialised with
``pgbench -i``, starts one session through it and feeds it pgbench ``-S`` statements as the
relay would (simple: one Query per statement; extended: Parse, Bind, Execute per statement,
decided at Parse and at Execute), then ``after_statement`` with an Outcome. Prints the CPU per
statement of the whole chain and of each hook alone (each timed around its own calls), for
``durability: write`` (the journal's own CPU on the loop; ``fsync`` adds the disk thread).
Interleaves ``--rounds`` rounds; with ``--baseline DIR`` the same runs from another source
tree (A/B, each round both trees). ``--profile`` prints a cProfile of the chain.

    .venv/bin/python bench/hook_chain.py [--statements N] [--rounds R] [--baseline DIR]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pgbench import (  # noqa: E402
    BENCH_POLICY,
    CLIENT_USER,
    DATABASE,
    HOST,
    ROLE,
    prepare_cluster,
    remove_tree,
)
from gateway.demo.tempcluster import TempCluster  # noqa: E402

# The child: run inside the tree under test (ROOT of that tree is first on sys.path).
CHILD = r'''
import asyncio, cProfile, json, os, pstats, random, struct, sys, time
sys.path.insert(0, os.getcwd())
from gateway.settings.config import load_config
from gateway.service import build_hooks, open_journal
from gateway.ops.monitoring import Monitoring
from gateway.proxy.hooks import HookChain, SessionInfo, Statement, Phase, Outcome

def bind_frame(value):
    body = b"\0\0" + struct.pack("!hh", 0, 1) + struct.pack("!i", len(value)) + value + b"\0\0"
    return b"B" + struct.pack("!i", len(body) + 4) + body

async def main(config, statements, mode, profile):
    settings = load_config(config)
    journal = await open_journal(settings)
    hooks = build_hooks(settings, journal, Monitoring(settings))
    chain = HookChain(hooks)
    info = SessionInfo("s1", "alice", frozenset(), "127.0.0.1", 5000, "bench", "pgbench", None)
    await chain.session_started(info)
    names = info.names
    random.seed(1)
    aids = [random.randint(1, 100000) for _ in range(1000)]
    simple = [f"SELECT abalance FROM pgbench_accounts WHERE aid = {a};" for a in aids]
    extended_sql = "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"
    binds = [bind_frame(str(a).encode()) for a in aids]
    clock = time.perf_counter_ns
    spent = {type(h).__name__: 0 for h in hooks}
    timed = HookChain([_Timed(h, spent, clock) for h in hooks])
    number = 0

    async def run(chain, statement):
        coroutine = chain.before_statement(statement)
        try:
            coroutine.send(None)
        except StopIteration:
            pass
        else:
            raise SystemExit("a hook waited")
        if statement.durable is not None:
            await statement.durable
        if statement.write_ahead is not None:
            await statement.write_ahead

    async def one(chain, i):
        nonlocal number
        number += 1
        if mode == "simple":
            statement = Statement(info, number, Phase.SIMPLE, simple[i % 1000])
        else:
            names.parse("", extended_sql)
            await run(chain, Statement(info, number, Phase.PARSE, extended_sql))
            frame = binds[i % 1000]
            names.bind(frame)
            portal = names.portals[""]
            statement = Statement(info, number, Phase.EXECUTE, portal.sql, bind_frame=frame)
        await run(chain, statement)
        chain.after_statement(statement, Outcome(rows=1, bytes_to_client=15,
                                                 command_tags=["SELECT 1"]))

    for i in range(2000):
        await one(chain, i)
    started = time.process_time()
    for i in range(statements):
        await one(chain, i)
    total = (time.process_time() - started) / statements * 1e6
    for i in range(statements):
        await one(timed, i)
    result = {"chain": total, **{k: v / statements / 1000 for k, v in spent.items()}}
    if profile:
        pr = cProfile.Profile()
        pr.enable()
        for i in range(statements):
            await one(chain, i)
        pr.disable()
        pstats.Stats(pr, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    await journal.close()
    print(json.dumps(result))

class _Timed:
    """A hook wrapped to add the CPU of its statement methods to ``spent``."""
    def __init__(self, hook, spent, clock):
        self.hook, self.spent, self.clock, self.name = hook, spent, clock, type(hook).__name__
        self.overrides = getattr(hook, "overrides", None)
    def __getattr__(self, name):
        return getattr(self.hook, name)
    def before_statement_now(self, statement):  # only trees with synchronous hooks call it
        from gateway.proxy.hooks import MUST_AWAIT, Hook
        if type(self.hook).before_statement_now is Hook.before_statement_now:
            return MUST_AWAIT
        t = self.clock()
        verdict = self.hook.before_statement_now(statement)
        self.spent[self.name] += self.clock() - t
        return verdict
    async def before_statement(self, statement):
        t = self.clock()
        coroutine = self.hook.before_statement(statement)
        try:
            coroutine.send(None)
        except StopIteration as stop:
            self.spent[self.name] += self.clock() - t
            return stop.value
        raise SystemExit("a hook waited")
    def after_statement(self, statement, outcome):
        t = self.clock()
        self.hook.after_statement(statement, outcome)
        self.spent[self.name] += self.clock() - t

import uvloop
uvloop.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"))
'''


def write_config(directory: Path, port: int, password: str, durability: str = "write") -> Path:
    import yaml

    from gateway.journal.keys import generate as generate_keys
    from protocols.postgres.scram import make_verifier

    directory.mkdir(parents=True)
    generate_keys(directory / "keys" / "journal")
    (directory / "policy.yaml").write_text(yaml.safe_dump(dict(BENCH_POLICY)), encoding="utf-8")
    config = {
        "listen": f"{HOST}:6999",
        "journal": {"dir": str(directory / "journal"),
                    "signing_key": str(directory / "keys" / "journal.key"),
                    "durability": durability},
        "policies": [str(directory / "policy.yaml")],
        "databases": {DATABASE: {"host": HOST, "port": port, "user": ROLE,
                                 "password_env": "BENCH_DB_PASSWORD"}},
        "users": {CLIENT_USER: {"password": make_verifier(secrets.token_urlsafe(12))}},
        "log": {"level": "warning"},
        "metrics": f"{HOST}:7999",
    }
    path = directory / "phigate.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def run_child(tree: Path, config: Path, statements: int, mode: str, profile: bool,
              password: str) -> dict[str, float]:
    python = tree / ".venv" / "bin" / "python"
    env = {**os.environ, "BENCH_DB_PASSWORD": password, "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        [str(python if python.exists() else sys.executable), "-c", CHILD, str(config),
         str(statements), mode, "1" if profile else "0"],
        cwd=tree, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"bench child failed in {tree}:\n{proc.stderr[-3000:]}")
    if profile:
        print(proc.stderr, file=sys.stderr)
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", type=lambda s: s.split(","), default=["simple", "extended"])
    parser.add_argument("--baseline", type=Path, help="another source tree to compare (A/B)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    trees = [("this", ROOT)] + ([("base", args.baseline.resolve())] if args.baseline else [])
    workdir = Path(tempfile.mkdtemp(prefix="phigate-hookbench-"))
    password = secrets.token_urlsafe(18)
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        with TempCluster() as cluster:
            prepare_cluster(cluster, password)
            for round_ in range(args.rounds):
                for mode in args.modes:
                    for name, tree in trees:
                        config = write_config(workdir / f"{name}-{mode}-{round_}",
                                              cluster.port, password)
                        results.setdefault((name, mode), []).append(run_child(
                            tree, config, args.statements, mode, args.profile, password))
    finally:
        remove_tree(workdir)
    load = os.getloadavg()
    print(f"µs CPU per statement, medians of {args.rounds} rounds "
          f"(load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f})")
    for (name, mode), rounds in results.items():
        keys = list(rounds[0])
        medians = {k: statistics.median(r[k] for r in rounds) for k in keys}
        parts = "  ".join(f"{k} {v:.1f}" for k, v in medians.items())
        print(f"  {name:>5} {mode:>8}: {parts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
