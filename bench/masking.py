"""Live masking: what it costs per statement, and how many rows per second it masks.

Owns one run: a throwaway PostgreSQL with the demo clinic schema, one ``phigate serve`` whose
policy lets ``clear`` read PHI in clear and ``masked`` read it masked (the same statements
through the same gateway), then interleaved rounds of a point ``SELECT * FROM patients WHERE
id = $1`` (psycopg, extended protocol, one connection per identity) reporting TPS and gateway
CPU µs per statement (from /proc), medians over rounds; the unmasked fast path A/B: the same
point SELECT by ``clear`` (a rule without masking) through a second ``phigate serve`` whose
policy has no masking at all (no ``masking:``, no ``phi_columns``), rounds interleaved and
alternating which gateway goes first, so the feature's cost for unmasked sessions is measured,
not assumed; and the row masker alone on 100k DataRows of the patients row shape (rows/s).
Run: ``.venv/bin/python -m bench.masking`` (``--rounds``, ``--seconds`` for shorter cells).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
import yaml

from bench.pgbench import (
    HOST,
    REPO,
    clean_env,
    cpu_seconds,
    free_port,
    stop_process,
    wait_listening,
)
from gateway.demo.demo_data import clinic_sql, grant_service_role_sql
from gateway.demo.tempcluster import TempCluster
from gateway.journal.keys import generate as generate_keys
from gateway.masking.rows import DETECT, Column, RowMasker
from policies.detectors import Detector
from policies.masking import Strategy
from protocols.postgres.scram import make_verifier

POLICY: dict[str, Any] = {
    "phi_tables": ["clinic.public.patients"],
    "phi_columns": {"clinic.public.patients": ["ssn", "mrn", "first_name", "last_name",
                                               "phone", "email", "address_line",
                                               "date_of_birth"]},
    "rules": [{"name": "clear", "users": ["clear"], "allow": ["select"]},
              {"name": "masked", "users": ["masked"], "allow": ["select"], "phi": "masked"}],
    "masking": [{"name": "bench-masked", "users": ["masked"], "columns": {
        "clinic.public.patients.ssn": "partial(last=4)",
        "clinic.public.patients.email": "hash",
        "clinic.public.patients.date_of_birth": "year",
        "clinic.public.patients.*": "redact"},
        "detect": ["ssn", "email", "phone", "mrn", "credit_card"]}],
}
# The same policy without the feature: what main's relay did before masking existed.
UNMASKED_POLICY: dict[str, Any] = {"phi_tables": POLICY["phi_tables"], "rules": POLICY["rules"][:1]}
PASSWORD = secrets.token_urlsafe(12)
SERVICE = "phigate_svc"


def start_gateway(cluster: TempCluster, workdir: Path, service_password: str,
                  policy: Mapping[str, Any]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    generate_keys(workdir / "keys" / "journal")
    (workdir / "policy.yaml").write_text(yaml.safe_dump(policy))
    verifier = make_verifier(PASSWORD)
    config = {
        "listen": f"{HOST}:{port}",
        "journal": {"dir": "journal", "signing_key": "keys/journal.key"},
        "policies": ["policy.yaml"],
        "databases": {"clinic": {"host": HOST, "port": cluster.port, "user": SERVICE,
                                 "password_env": "BENCH_DB_PASSWORD"}},
        "users": {"clear": {"password": verifier}, "masked": {"password": verifier}},
        "log": {"level": "warning"},
    }
    (workdir / "phigate.yaml").write_text(yaml.safe_dump(config))
    log = workdir / "gateway.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "-c", str(workdir / "phigate.yaml")],
            cwd=workdir, stdout=out, stderr=out, start_new_session=True,
            env=clean_env(BENCH_DB_PASSWORD=service_password, PYTHONPATH=str(REPO)))
    wait_listening(port, process, "phigate", log)
    return process, port


def point_selects(port: int, user: str, seconds: float, pid: int) -> tuple[float, float]:
    """(statements per second, gateway CPU µs per statement) for one identity."""
    dsn = f"host={HOST} port={port} dbname=clinic user={user} password={PASSWORD} " \
          "sslmode=disable"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT * FROM patients WHERE id = %s", (1,)).fetchall()  # warm up
        count, cpu0, start = 0, cpu_seconds(pid), time.perf_counter()
        while time.perf_counter() - start < seconds:
            conn.execute("SELECT * FROM patients WHERE id = %s", (count % 500 + 1,)).fetchall()
            count += 1
        elapsed, cpu = time.perf_counter() - start, cpu_seconds(pid) - cpu0
    return count / elapsed, cpu / count * 1e6


def masker_rows_per_second(rows: int) -> float:
    """The row masker alone: the patients row shape, every identifier masked, detectors on."""
    values = [b"7", b"MRN00012345", b"Ann", b"Lee", b"1987-06-05", b"F", b"123-45-6789",
              b"(212) 555-0142", b"ann@example.org", b"1 Main St", b"Springfield", b"IL",
              b"62701"]
    plans: list[Strategy | str | None] = [None, Strategy("redact"), Strategy("redact"),
                                          Strategy("redact"), Strategy("year"), DETECT,
                                          Strategy("partial", last=4), Strategy("redact"),
                                          Strategy("hash"), Strategy("redact"), DETECT, DETECT,
                                          DETECT]
    types = [20, 25, 25, 25, 1082, 1042, 25, 25, 25, 25, 25, 1042, 25]
    columns = [Column(i, f"c{i}", types[i], False, plans[i]) for i in range(len(values))]
    body = struct.pack("!h", len(values)) + b"".join(
        struct.pack("!i", len(v)) + v for v in values)
    frame = b"D" + struct.pack("!i", len(body) + 4) + body
    masker = RowMasker(columns, Detector({"ssn", "email", "phone", "mrn", "credit_card"},
                                         r"\bMRN[-:# ]?\d{6,10}\b"), b"k" * 32, ("bench",))
    start = time.perf_counter()
    for _ in range(rows):
        masker.transform(frame)
    return rows / (time.perf_counter() - start)


def run(args: argparse.Namespace) -> str:
    service_password = secrets.token_urlsafe(12)
    with tempfile.TemporaryDirectory(prefix="phigate-bench-mask-") as tmp, \
            TempCluster() as cluster:
        cluster.add_role(SERVICE, service_password)
        cluster.create_database("clinic")
        cluster.execute(clinic_sql(patients=500) + grant_service_role_sql(SERVICE),
                        dbname="clinic")
        with_masking = start_gateway(cluster, Path(tmp) / "masking", service_password, POLICY)
        without = start_gateway(cluster, Path(tmp) / "plain", service_password,
                                UNMASKED_POLICY)
        gateways = {"masking": with_masking, "plain": without}
        cells: dict[str, list[tuple[float, float]]] = {
            "clear": [], "masked": [], "ab-masking": [], "ab-plain": []}
        try:
            for index in range(args.rounds):  # interleaved: load drift hits every cell alike
                for user in ("clear", "masked"):
                    cells[user].append(point_selects(with_masking[1], user, args.seconds,
                                                     with_masking[0].pid))
                order = ("masking", "plain") if index % 2 == 0 else ("plain", "masking")
                for name in order:
                    process, port = gateways[name]
                    cells[f"ab-{name}"].append(point_selects(port, "clear", args.seconds,
                                                             process.pid))
        finally:
            for process, _ in gateways.values():
                stop_process(process)
    medians = {name: (statistics.median(c[0] for c in found),
                      statistics.median(c[1] for c in found)) for name, found in cells.items()}
    lines = [f"cell          TPS      gateway CPU µs/stmt   (medians of {args.rounds} rounds "
             f"of {args.seconds:g} s)"]
    labels = {"clear": "clear", "masked": "masked", "ab-masking": "A/B: masking",
              "ab-plain": "A/B: none"}
    lines += [f"{labels[name]:<13} {tps:<8.0f} {cpu:.0f}" for name, (tps, cpu) in medians.items()]
    lines.append(f"masked/clear gateway CPU per statement: "
                 f"{medians['masked'][1] / medians['clear'][1]:.2f}x")
    lines.append("unmasked session, policy with/without a masking section: CPU "
                 f"{medians['ab-masking'][1] / medians['ab-plain'][1]:.2f}x, TPS "
                 f"{medians['ab-masking'][0] / medians['ab-plain'][0]:.2f}x")
    rate = statistics.median(masker_rows_per_second(args.rows) for _ in range(3))
    lines.append(f"row masker alone: {rate:,.0f} rows/s ({args.rows:,} rows, 13 columns, "
                 "8 masked, 5 scanned by detectors)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rows", type=int, default=100_000)
    print(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
