"""Scripts in the manner of PostgreSQL 15's ``lock`` and ``largeobject`` regression tests,
run with real psql through the gateway and directly: the outputs match, nothing hangs.

The scripts (``tests/e2e/scripts``) are our own; they rebuild the constructs that made
sessions hang (issue 17): LOCK TABLE on views of views and on views that end up referring to
each other, inheritance children, SET ROLE inside transactions, and large objects through SQL
and through psql's fast-path commands, including read-only transactions.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ClusterInfo
from tests.e2e.harness import GatewayProcess

SCRIPTS = Path(__file__).resolve().parent / "scripts"
_OID = re.compile(r"\b\d{5,}\b")  # large-object OIDs differ between the two runs

pytestmark = pytest.mark.usefixtures("service_may_create")


def run_script(dsn: str, script: Path, workdir: Path) -> str:
    result = subprocess.run(
        ["psql", "-X", "-a", "-v", "ON_ERROR_STOP=0", "-v", f"workdir={workdir}", "-d", dsn,
         "-f", str(script)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60,
        env={**os.environ, "PGSSLMODE": "disable"})
    return _OID.sub("<oid>", result.stdout.replace(str(script), "SCRIPT"))


@pytest.mark.parametrize("name", ["locks.sql", "largeobjects.sql"])
def test_script_through_the_gateway_matches_postgres(
        start_gateway: Callable[..., GatewayProcess], pg_cluster: ClusterInfo, tmp_path: Path,
        name: str) -> None:
    gateway = start_gateway()
    direct = run_script(pg_cluster.dsn(), SCRIPTS / name, tmp_path)
    through = run_script(gateway.dsn("bob"), SCRIPTS / name, tmp_path)
    assert through.rstrip().endswith("done\n(1 row)") or "done" in through.splitlines()[-3:]
    assert through == direct
    assert gateway.stop() == 0
