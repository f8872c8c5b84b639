"""How long DDL through the gateway holds another session of the same database.

Owns one run: a throwaway PostgreSQL with the demo clinic schema, one ``phigate serve``, and two
sessions of one identity (psycopg, autocommit). Per DDL kind, ``--repeat`` times: the DDL in
one session, then at once ``SELECT 1`` in the other; it prints the medians (and p90) of the
other session's ``SELECT 1`` (what the catalog's re-read held it) and of the pair, next to
``SELECT 1`` in both as the floor. The kinds: DDL the gateway does not follow (TRUNCATE, a
plain index, COMMENT), DDL that re-reads the relations only (CREATE TABLE, CREATE TEMP TABLE),
and DDL that re-reads the functions too (a table with a default calling a user function).
Run: ``.venv/bin/python -m bench.ddl_hold`` (``--repeat``).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg
import yaml

from bench.pgbench import HOST, REPO, clean_env, free_port, stop_process, wait_listening
from gateway.demo.demo_data import clinic_sql, grant_service_role_sql
from gateway.demo.tempcluster import TempCluster
from gateway.journal.keys import generate as generate_keys
from protocols.postgres.scram import make_verifier

PASSWORD = secrets.token_urlsafe(12)
SERVICE = "phigate_svc"
POLICY = {"phi_tables": ["clinic.public.patients"],
          "rules": [{"name": "dba", "users": ["dba"], "allow": ["all"]}]}
KINDS = {  # label -> DDL ({i}: the repetition)
    "SELECT 1 (floor)": "SELECT 1",
    "TRUNCATE": "TRUNCATE bench.t",
    "CREATE INDEX": "CREATE INDEX ON bench.t (a)",
    "COMMENT": "COMMENT ON TABLE bench.t IS 'n{i}'",
    "CREATE TABLE": "CREATE TABLE bench.t{i} (x int)",
    "CREATE TEMP TABLE": "CREATE TEMP TABLE tt{i} (x int)",
    "CREATE TABLE + default": "CREATE TABLE bench.d{i} (x int DEFAULT bench.one())",
}


def start_gateway(cluster: TempCluster, workdir: Path, service_password: str
                  ) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    generate_keys(workdir / "keys" / "journal")
    (workdir / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    config = {
        "listen": f"{HOST}:{port}",
        "journal": {"dir": "journal", "signing_key": "keys/journal.key"},
        "policies": ["policy.yaml"],
        "databases": {"clinic": {"host": HOST, "port": cluster.port, "user": SERVICE,
                                 "password_env": "BENCH_DB_PASSWORD"}},
        "users": {"dba": {"password": make_verifier(PASSWORD)}},
        "log": {"level": "warning"},
    }
    (workdir / "phigate.yaml").write_text(yaml.safe_dump(config))
    log = workdir / "gateway.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "-c", str(workdir / "phigate.yaml")],
            cwd=workdir, stdout=out, stderr=out, start_new_session=True,
            env=clean_env(BENCH_DB_PASSWORD=service_password,
                          PYTHONPATH=str(REPO)))
    wait_listening(port, process, "phigate", log)
    return process, port


def measure(port: int, repeat: int) -> dict[str, tuple[list[float], list[float]]]:
    """Per kind: (the other session's SELECT 1, the pair) in ms."""
    dsn = f"host={HOST} port={port} dbname=clinic user=dba password={PASSWORD} sslmode=disable"
    found: dict[str, tuple[list[float], list[float]]] = {}
    with psycopg.connect(dsn, autocommit=True) as ddl, \
            psycopg.connect(dsn, autocommit=True) as other:
        ddl.execute("DROP SCHEMA IF EXISTS bench CASCADE")
        ddl.execute("CREATE SCHEMA bench")
        ddl.execute("CREATE TABLE bench.t (a int)")
        ddl.execute("CREATE FUNCTION bench.one() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        for label, sql in KINDS.items():
            held, pair = [], []
            for i in range(repeat):
                start = time.perf_counter()
                ddl.execute(sql.format(i=i))
                middle = time.perf_counter()
                other.execute("SELECT 1")
                end = time.perf_counter()
                held.append((end - middle) * 1000)
                pair.append((end - start) * 1000)
            found[label] = (held, pair)
        ddl.execute("DROP SCHEMA bench CASCADE")
    return found


def _p90(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.9)]


def run(args: argparse.Namespace) -> str:
    service_password = secrets.token_urlsafe(12)
    with tempfile.TemporaryDirectory(prefix="phigate-bench-ddl-") as tmp, \
            TempCluster() as cluster:
        cluster.add_role(SERVICE, service_password)
        cluster.create_database("clinic")
        cluster.execute(clinic_sql(patients=500) + grant_service_role_sql(SERVICE)
                        + f"GRANT CREATE ON DATABASE clinic TO {SERVICE};", dbname="clinic")
        process, port = start_gateway(cluster, Path(tmp), service_password)
        try:
            found = measure(port, args.repeat)
        finally:
            stop_process(process)
    lines = [f"{'statement':<24} other session's SELECT 1 (ms)   DDL + SELECT 1 (ms)   "
             f"(median / p90 of {args.repeat})"]
    for label, (held, pair) in found.items():
        lines.append(f"{label:<24} {statistics.median(held):7.1f} / {_p90(held):<7.1f}"
                     f"{'':15} {statistics.median(pair):7.1f} / {_p90(pair):.1f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=60)
    print(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
