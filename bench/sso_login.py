"""Login latency: a psql connection (TLS, then SELECT 1) with SCRAM versus an SSO token.

Starts a temporary PostgreSQL, the test OpenID provider (tests/sso/idp, npm oidc-provider) and
``phigate serve`` with TLS and ``sso:``, then runs psql alternately as a local SCRAM identity
and with an ID token (interleaved, so machine load hits both alike) and prints the medians
and their ratio. The first token login (discovery and the JWKS fetch) is timed apart.

    .venv/bin/python bench/sso_login.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.demo.tempcluster import TempCluster  # noqa: E402
from tests.conftest import _provision  # noqa: E402
from tests.e2e.harness import IDENTITIES, GatewayProcess, free_port  # noqa: E402
from tests.pki import self_signed_cert  # noqa: E402
from tests.sso.conftest import sso_config  # noqa: E402
from tests.sso.idp import IdentityProvider, email  # noqa: E402


def connect(gateway: GatewayProcess, user: str, password: str) -> float:
    dsn = f"host=127.0.0.1 port={gateway.port} dbname=clinic user='{user}' sslmode=require"
    started = time.perf_counter()
    result = subprocess.run(["psql", "-X", "-At", "-d", dsn, "-c", "SELECT 1"],
                            capture_output=True, text=True, timeout=30,
                            env={**os.environ, "PGPASSWORD": password})
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, TempCluster() as cluster:
        work = Path(tmp)
        info = _provision(cluster)
        idp = IdentityProvider(work, free_port()).start()
        gateway = GatewayProcess(work / "gw", info, sso_config(
            idp, self_signed_cert(work), leeway="30s")).start()
        try:
            token = idp.id_token("alice")
            first = connect(gateway, email("alice"), token)
            scram, oidc = [], []
            for _ in range(args.rounds):
                scram.append(connect(gateway, "alice", IDENTITIES["alice"].password))
                oidc.append(connect(gateway, email("alice"), token))
        finally:
            gateway.stop()
            idp.stop()
    s, o = statistics.median(scram), statistics.median(oidc)
    print(f"first token login (discovery + JWKS): {first * 1000:.1f} ms")
    print(f"psql connect + SELECT 1 over TLS, median of {args.rounds} interleaved runs:")
    print(f"  SCRAM-SHA-256  {s * 1000:.1f} ms")
    print(f"  oidc token     {o * 1000:.1f} ms   ratio {o / s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
