"""Console index benchmark: index build rate (entries/s) and search latency (p50/p99).

    .venv/bin/python bench/console.py [--entries 1000000] [--dir DIR] [--searches 200]
    .venv/bin/python bench/console.py --entries 10000000     # the issue's large journal

Generates a journal of ``--entries`` lines shaped like the gateway's (format 2: session
starts and ends, statements with their policy fields, outcomes; 40 people, 2 databases,
PHI and non-PHI tables, a few percent denied), chained with the journal's own ``link`` so
the index accepts every line (no signatures: the index reads links, not checkpoints). Then
builds the console's index from scratch, appends 1% more and times the incremental update,
and runs each kind of search the activity page makes (person, table, decision, text,
group, combined, a deep page) ``--searches`` times, printing p50 and p99 per kind and over
all. The generated journal and the index are deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.console.index import SearchIndex  # noqa: E402
from gateway.console.search import ActivityFilter, Reader  # noqa: E402
from gateway.journal.chain import genesis, link  # noqa: E402
from gateway.journal.segments import segment_name  # noqa: E402

PEOPLE = [f"person{i:02d}" for i in range(40)]
GROUPS = {name: ("clinicians" if i % 3 else "engineers") for i, name in enumerate(PEOPLE)}
TABLES = [("patients", True), ("encounters", True), ("lab_results", True),
          ("appointments", False), ("invoices", False), ("audit_codes", False)]
WORDS = ["mrn", "last_name", "date_of_birth", "diagnosis", "amount", "status", "ward",
         "physician", "discharge", "insurance"]
SEGMENT_LINES = 250_000  # about 100 MB segments, as with the default 64 MiB rotation


class Generator:
    """Journal lines, chained; sessions of 5-60 statements each."""

    def __init__(self, directory: Path, seed: int = 7) -> None:
        self.directory = directory
        self.random = random.Random(seed)
        self.seq = 0
        self.prev = genesis("bench-console")
        self.clock = datetime(2026, 11, 1, tzinfo=UTC)
        self.file = None
        self.lines_in_file = 0

    def _write(self, kind: str, fields: dict[str, object]) -> None:
        if self.file is None or self.lines_in_file >= SEGMENT_LINES:
            if self.file is not None:
                self.file.close()
            self.file = open(self.directory / segment_name(self.seq + 1), "ab")
            self.lines_in_file = 0
        self.seq += 1
        self.clock += timedelta(milliseconds=self.random.randint(5, 400))
        line = orjson.dumps({"seq": self.seq, "time": self.clock.isoformat()[:23] + "Z",
                             "type": kind, "prev": self.prev, **fields})
        self.file.write(line + b"\n")
        self.prev = link(line)
        self.lines_in_file += 1

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

    def generate(self, entries: int) -> None:
        target = self.seq + entries
        while self.seq < target:
            self._session(min(self.random.randint(5, 60), max((target - self.seq - 2) // 2, 0)))

    def _session(self, statements: int) -> None:
        r = self.random
        who = r.choice(PEOPLE)
        sid = f"{r.getrandbits(64):016x}"
        client = f"10.0.{r.randint(0, 9)}.{r.randint(1, 250)}:{r.randint(30000, 60000)}"
        database = r.choice(("clinic", "billing"))
        self._write("session_start", {
            "session": sid, "identity": who, "groups": [GROUPS[who]], "client": client,
            "database": database, "application_name": "psql", "tls": "TLSv1.3",
            "reason": None})
        for n in range(1, statements + 1):
            table, phi = r.choice(TABLES)
            columns = ", ".join(r.sample(WORDS, 3))
            denied = phi and GROUPS[who] == "engineers" or r.random() < 0.02
            self._write("statement", {
                "session": sid, "identity": who, "client": client, "database": database,
                "n": n, "protocol": "simple",
                "sql": f"SELECT id, {columns} FROM {table} WHERE id = {r.randint(1, 10**6)}",
                "decision": "deny" if denied else "allow",
                "rules": ["engineers-no-phi" if denied else "clinicians-read-phi"],
                "reason": "phi denied" if denied else "allowed", "classes": ["select"],
                "tables": [table],
                "phi_tables": [table] if phi else []})
            self._write("outcome", {
                "session": sid, "n": n, "rows": 0 if denied else r.randint(0, 40),
                "bytes": r.randint(50, 5000), "duration_ms": round(r.random() * 20, 3),
                "tags": ["SELECT 1"], "sqlstate": "42501" if denied else None})
        self._write("session_end", {
            "session": sid, "identity": who, "duration_s": round(r.random() * 600, 3),
            "statements": statements, "refused": 0, "rows": 0, "end": "client"})


SEARCHES = {
    "person": lambda r: ActivityFilter(identity=r.choice(PEOPLE)),
    "table": lambda r: ActivityFilter(table=r.choice(TABLES)[0]),
    "decision": lambda r: ActivityFilter(decision="deny"),
    "text": lambda r: ActivityFilter(q=r.choice(WORDS)),
    "two words": lambda r: ActivityFilter(q=" ".join(r.sample(WORDS, 2))),
    "group": lambda r: ActivityFilter(
        group="engineers", identities=tuple(p for p in PEOPLE if GROUPS[p] == "engineers")),
    "person+table+deny+text": lambda r: ActivityFilter(
        identity=r.choice(PEOPLE), table="patients", decision="deny", q=r.choice(WORDS)),
    "PHI only, page 20": lambda r: ActivityFilter(phi=True, page=20),
}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--searches", type=int, default=200, help="runs of each search kind")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the journal and the index")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-console-", dir=args.dir))
    journal, index_path = work / "journal", work / "index.sqlite3"
    journal.mkdir()
    try:
        started = time.perf_counter()
        generator = Generator(journal)
        generator.generate(args.entries)
        generator.close()
        size = sum(p.stat().st_size for p in journal.iterdir())
        print(f"journal: {generator.seq:,} entries, {size / 2**20:,.0f} MiB, generated in "
              f"{time.perf_counter() - started:.1f} s")

        index = SearchIndex(index_path, journal)
        started = time.perf_counter()
        state = index.update()
        seconds = time.perf_counter() - started
        print(f"index build: {state.entries:,} entries in {seconds:.1f} s = "
              f"{state.entries / seconds:,.0f} entries/s "
              f"(index {index_path.stat().st_size / 2**20:,.0f} MiB)")
        more = max(args.entries // 100, 1000)
        generator = Generator(journal, seed=8)
        generator.seq, generator.prev = state.last_seq, state.position.head or ""
        generator.clock += timedelta(days=40)
        generator.file = open(journal / state.position.segment, "ab") \
            if state.position.segment else None
        generator.generate(more)
        generator.close()
        started = time.perf_counter()
        after = index.update()
        seconds = time.perf_counter() - started
        print(f"incremental update: {after.entries - state.entries:,} new entries in "
              f"{seconds:.2f} s = {(after.entries - state.entries) / seconds:,.0f} entries/s")
        index.close()

        r = random.Random(1)
        everything: list[float] = []
        print(f"searches ({args.searches} runs each; one page of 50 and the count up to "
              f"10,000, as the activity page asks):")
        with Reader(index_path) as reader:
            for name, make in SEARCHES.items():
                times = []
                for _ in range(args.searches):
                    where = make(r)
                    t0 = time.perf_counter()
                    reader.activity(where)
                    times.append((time.perf_counter() - t0) * 1000)
                everything += times
                print(f"  {name:<26} p50 {statistics.median(times):7.1f} ms   "
                      f"p99 {percentile(times, 99):7.1f} ms")
        print(f"  {'all':<26} p50 {statistics.median(everything):7.1f} ms   "
              f"p99 {percentile(everything, 99):7.1f} ms")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
