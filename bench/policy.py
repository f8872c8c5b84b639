"""Decision latency of the policy engine: classification + decision per statement.

Runs the example policy (examples/policies/clinic.yaml) over the classifier corpus
(tests/policies/corpus.py), statements under 1 KB, for a clinician, an engineer and an on-call
user, and prints the median and p99 per decision twice: cold (every statement parsed: cache
disabled) and cached (the classification cache warm, as for a repeated statement or an
extended-protocol Parse). Target from issue 4: <= 50 us median. The same for the exfiltration
corpus of issue 10 (tests/policies/exfiltration.py: aggregates, windows, ARRAY(), recursive
CTEs, statistics and activity views). With ``--tps`` it also runs pgbench -S through the gateway
with pgbench_accounts as PHI, without and with a ``max_bytes`` rule (bench/pgbench.py variants
``phigate-phi`` and ``phigate-bytes``, interleaved, several rounds), and prints the median of
what byte counting costs (target: under 5% of TPS).

    .venv/bin/python bench/policy.py [--rounds N] [--tps] [--seconds S] [--tps-rounds R]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policies.cache import ClassificationCache  # noqa: E402
from policies.context import RequestContext  # noqa: E402
from policies.engine import Engine  # noqa: E402
from policies.loader import load_policy  # noqa: E402
from policies.model import Policy  # noqa: E402
from tests.policies.corpus import CORPUS  # noqa: E402
from tests.policies.exfiltration import ATTEMPTS  # noqa: E402

TARGET_US = 50.0
MAX_STATEMENT = 1024


def contexts() -> list[RequestContext]:
    now = dt.datetime(2024, 6, 4, 14, 0, tzinfo=dt.UTC)
    return [
        RequestContext("alice", "clinic", now, frozenset({"clinicians"}), client_ip="10.0.0.5"),
        RequestContext("bob", "clinic", now, frozenset({"engineers"}), client_ip="10.0.0.6"),
        RequestContext("oncall", "clinic", now, reason="INC-1234", client_ip="10.0.0.7"),
    ]


def measure(engine: Engine, statements: list[str], rounds: int) -> list[float]:
    samples = []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for ctx in contexts():
            for sql in statements:
                start = clock()
                engine.decide(ctx, sql)
                samples.append((clock() - start) / 1000)
    return samples


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    median = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    verdict = "meets" if median <= TARGET_US else "MISSES"
    return (f"{name:<8} n={len(ordered):>6}  median {median:7.1f} us  p99 {p99:7.1f} us  "
            f"({verdict} the {TARGET_US:.0f} us median target)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--tps", action="store_true", help="also measure byte counting's cost")
    parser.add_argument("--seconds", type=int, default=10, help="per pgbench cell (--tps)")
    parser.add_argument("--tps-rounds", type=int, default=5, help="interleaved rounds (--tps)")
    args = parser.parse_args()
    path = ROOT / "examples" / "policies" / "clinic.yaml"
    policy = load_policy(path.read_text(encoding="utf-8"), str(path))
    for name, sqls in (("classifier corpus", [e.sql for e in CORPUS]),
                       ("exfiltration corpus", [a.sql for a in ATTEMPTS])):
        latency(policy, name, [s for s in sqls if len(s.encode()) < MAX_STATEMENT], args.rounds)
    if args.tps:
        return byte_counting_cost(args.seconds, args.tps_rounds)
    return 0


def latency(policy: Policy, name: str, statements: list[str], rounds: int) -> None:
    cold = Engine([policy], cache=ClassificationCache(0))
    measure(cold, statements, 1)  # warm up imports and the PHI memo
    cold_samples = measure(cold, statements, max(1, rounds // 4))

    cached = Engine([policy])
    measure(cached, statements, 1)  # fills the cache
    cached_samples = measure(cached, statements, rounds)

    print(f"policy engine, {name}: {len(statements)} statements < {MAX_STATEMENT} B, "
          f"example policy, 3 identities")
    print(summary("cold", cold_samples))
    print(summary("cached", cached_samples))


def byte_counting_cost(seconds: int, rounds: int) -> int:
    """pgbench -S through the gateway, PHI without and with max_bytes: interleaved cells,
    ``rounds`` times, and the median cost per mode and client count."""
    sys.path.insert(0, str(ROOT / "bench"))
    import pgbench  # noqa: PLC0415  (bench/pgbench.py, only needed with --tps)

    args = pgbench.parse_args(["--seconds", str(seconds), "--clients", "1,8", "--modes",
                               "simple,extended", "--targets", "phigate-phi,phigate-bytes"])
    costs: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):
        cells = pgbench.run(args)
        print(pgbench.format_table(cells, args.targets))
        for mode in args.modes:
            for clients in args.clients:
                tps = {c.target: c.tps for c in cells if c.mode == mode and c.clients == clients}
                base, counted = tps.get("phigate-phi"), tps.get("phigate-bytes")
                if base and counted:
                    costs.setdefault((mode, clients), []).append(100 * (1 - counted / base))
    for (mode, clients), values in costs.items():
        cost = statistics.median(values)
        verdict = "meets" if cost < 5 else "MISSES"
        print(f"byte counting, {mode} c={clients}: median cost {cost:+.1f}% TPS over "
              f"{len(values)} rounds ({verdict} the < 5% target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
