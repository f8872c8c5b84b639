"""Journal benchmark: acknowledged appends/s and commit latency, then verify speed.

    .venv/bin/python bench/journal.py [--dir DIR] [--seconds 3] [--writers 1,8,32,128]

Each level opens a fresh journal (fsync durability, digest parameters) and
runs N concurrent writers that each append a realistic ``statement`` entry
and await it, as sessions do. Prints acknowledged entries/s, p50/p99 commit
latency, mean batch size and the process CPU per acknowledged entry (event loop,
writer thread and the kernel time of the writes and syncs) next to the targets
from issue 3; then verifies
the journals (entries/s, MB/s). Also measures the disk itself (write +
fdatasync of one line), since no journal commits faster than its disk syncs.
Run it on the filesystem the journal will use: tmpfs makes fsync free.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.journal import Journal, JournalSettings  # noqa: E402
from gateway.journal.keys import generate, load_public  # noqa: E402
from gateway.journal.verify import verify_journal  # noqa: E402

TARGET_ONE = 2_000
TARGET_32 = 20_000
TARGET_P99_MS = 5.0
TARGET_VERIFY = 150_000


def fields(writer: int, n: int, params: list[str | None] | None) -> dict[str, object]:
    return {
        "session": f"9f3c2a1e-{writer:04d}", "n": n, "protocol": "extended",
        "sql": "SELECT p.id, p.name, p.dob, v.reason FROM patients p JOIN visits v "
               "ON v.patient_id = p.id WHERE p.mrn = $1 AND v.clinic = $2",
        "params": params, "classes": ["read"], "tables": ["public.patients", "public.visits"],
        "decision": "allow", "rule": "clinicians-read-own-clinic",
    }


async def run_level(directory: Path, key: Path, writers: int, seconds: float
                    ) -> tuple[float, list[float], float, float]:
    settings = JournalSettings(dir=directory, signing_key=key, durability="fsync",
                               immutable=False)
    journal = await Journal.open(settings)
    params = journal.digest_parameters([b"MRN-0042-7781", b"clinic-9"])
    latencies: list[float] = []
    done = 0
    measuring = False
    stop_at = 0.0

    async def writer(w: int) -> None:
        nonlocal done
        n = 0
        clock = time.perf_counter
        while True:
            started = clock()
            if started >= stop_at:
                return
            await journal.append("statement", fields(w, n, params))
            if measuring:
                latencies.append(clock() - started)
                done += 1
            n += 1

    stop_at = time.perf_counter() + 0.5  # warm-up
    await asyncio.gather(*(writer(w) for w in range(writers)))
    batches_before, entries_before = journal.stats.batches, journal.stats.entries
    measuring = True
    cpu_started = time.process_time()  # the whole process: loop and writer thread
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    stats = journal.stats
    await journal.close()
    batch = (stats.entries - entries_before) / max(1, stats.batches - batches_before)
    return done / elapsed, latencies, batch, cpu / max(1, done) * 1e6


def disk_baseline(directory: Path, seconds: float = 1.0) -> tuple[float, float]:
    """p50/p99 ms of write + fdatasync of one 400-byte line, on the journal's filesystem."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    samples = []
    try:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            os.write(fd, b"x" * 399 + b"\n")
            os.fdatasync(fd)
            samples.append((time.perf_counter() - t) * 1e3)
    finally:
        os.close(fd)
        path.unlink()
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99)]


def mark(ok: bool) -> str:
    return "ok  " if ok else "MISS"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to put journals (default: a temporary directory)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time per level")
    parser.add_argument("--writers", default="1,8,32,128")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="phigate-bench-", dir=args.dir))
    try:
        private, public = generate(root / "keys" / "journal")
        p50, p99 = disk_baseline(root)
        load = os.getloadavg()[0]
        print(f"journal benchmark in {root}  ({os.cpu_count()} CPUs, load {load:.1f}, "
              f"python {sys.version.split()[0]}{', uvloop' if args.uvloop else ''})")
        print(f"disk: write+fdatasync p50 {p50:.3f} ms, p99 {p99:.3f} ms")
        print(f"{'writers':>7}  {'acked/s':>9}  {'p50 ms':>7}  {'p99 ms':>7}  {'batch':>6}  "
              f"{'CPU µs':>6}  target")
        runner = _runner(args.uvloop)
        dirs = []
        for count in (int(w) for w in args.writers.split(",")):
            directory = root / f"w{count}"
            dirs.append(directory)
            rate, latencies, batch, cpu = runner(run_level(directory, private, count, args.seconds))
            latencies.sort()
            p50 = statistics.median(latencies) * 1e3
            p99 = latencies[int(len(latencies) * 0.99)] * 1e3
            target = []
            if count == 1:
                target.append(f"{mark(rate >= TARGET_ONE)} >= {TARGET_ONE}/s")
            if count == 32:
                target.append(f"{mark(rate >= TARGET_32)} >= {TARGET_32}/s")
            if count <= 32:
                target.append(f"{mark(p99 <= TARGET_P99_MS)} p99 <= {TARGET_P99_MS} ms")
            print(f"{count:>7}  {rate:>9,.0f}  {p50:>7.2f}  {p99:>7.2f}  {batch:>6.1f}  "
                  f"{cpu:>6.1f}  {'; '.join(target)}")
        key = load_public(public)
        for workers in (1, None):
            entries = size = 0
            seconds = 0.0
            for directory in dirs:
                report = verify_journal(directory, key, workers=workers)
                if not report.ok:
                    print(f"verify FAILED: {report.summary()}")
                    return 1
                entries += report.entries
                size += report.bytes
                seconds += report.seconds
            label = "1 process" if workers == 1 else "auto"
            speed = entries / seconds
            print(f"verify ({label}): {entries:,} entries, {size / 1e6:.1f} MB in {seconds:.2f} s"
                  f" = {speed:,.0f} entries/s, {size / 1e6 / seconds:.0f} MB/s  "
                  f"{mark(speed >= TARGET_VERIFY)} >= {TARGET_VERIFY:,}/s")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def _runner(use_uvloop: bool):  # type: ignore[no-untyped-def]
    if use_uvloop:
        import uvloop

        return uvloop.run
    return asyncio.run


if __name__ == "__main__":
    sys.exit(main())
