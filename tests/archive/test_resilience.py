"""The archive going away and the gateway dying mid-upload.

Statements keep running while the store is unreachable (a TCP relay the test
switches off in front of the moto server); the backlog shows in /metrics, the
``journal`` alert fires and /readyz turns 503 after ``max_delay``; everything
drains once the store is back. A gateway killed with SIGKILL during uploads
resumes after restart without a duplicate object version or ``archived`` entry,
also when it died between journaling ``archived`` entries and saving its index
(archive-state.json put back as it was before them).
"""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from tests.archive.conftest import archive_overrides
from tests.archive.s3servers import NetFault, S3Server
from tests.archive.test_upload import busy, entries, sealed, wait_for
from tests.e2e.harness import GatewayProcess, free_port, psql


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def test_unreachable_archive_never_blocks_statements_then_drains(
        moto: S3Server, fault: NetFault, archived_gateway: Callable[..., GatewayProcess]) -> None:
    bucket = moto.bucket()
    port = free_port()
    overrides = archive_overrides(fault.endpoint, bucket, max_delay="1s")
    overrides["metrics"] = f"127.0.0.1:{port}"
    overrides["alerts"] = {"sinks": {"ops-log": {"type": "log"}},
                           "rules": [{"name": "journal-trouble", "when": "journal",
                                      "sinks": ["ops-log"]}]}
    gateway = archived_gateway(moto, overrides)
    fault.down()
    busy(gateway, 60)  # statements run while nothing reaches the archive
    assert psql(gateway, "SELECT 'still running'").stdout.strip() == "still running"
    assert wait_for(lambda: readyz(port)[0] == 503), readyz(port)
    assert "not archived" in readyz(port)[1]["checks"]["archive"]
    assert metric(port, "phigate_archive_backlog_segments") >= 3
    assert wait_for(lambda: any("not archived" in str(a.get("message", a))
                                for a in entries(gateway, "alert")))

    fault.up()
    assert wait_for(lambda: readyz(port)[0] == 200), readyz(port)
    # Archiving journals entries too, which may seal one more segment: it drains as well.
    assert wait_for(lambda: metric(port, "phigate_archive_backlog_segments") == 0)
    shipped = {f"gw/segments/{p.name}" for p in sealed(gateway)}
    assert wait_for(lambda: shipped <= {e["key"] for e in entries(gateway, "archived")})
    assert gateway.stop() == 0


def test_kill_during_uploads_resumes_without_duplicates(
        moto: S3Server, archived_gateway: Callable[..., GatewayProcess]) -> None:
    bucket = moto.bucket()
    gateway = archived_gateway(moto, archive_overrides(moto.endpoint, bucket,
                                                       upload={"interval": "50ms"}))
    busy(gateway, 80)
    assert wait_for(lambda: bool(entries(gateway, "archived")), 10)
    kill(gateway)  # somewhere in the middle of shipping
    restart_and_drain(gateway)
    assert_once(moto, bucket, gateway)


def test_kill_before_the_index_is_saved_journals_nothing_twice(
        moto: S3Server, archived_gateway: Callable[..., GatewayProcess]) -> None:
    bucket = moto.bucket()
    gateway = archived_gateway(moto, archive_overrides(moto.endpoint, bucket))
    state = gateway.journal_dir / "archive-state.json"
    busy(gateway, 40)
    assert wait_for(lambda: state.exists() and bool(entries(gateway, "archived")))
    stale = state.read_bytes()
    known = len(entries(gateway, "archived"))
    busy(gateway, 40)
    assert wait_for(lambda: len(entries(gateway, "archived")) > known)
    kill(gateway)
    # As if the kill came after journaling those entries but before saving the index.
    state.write_bytes(stale)
    restart_and_drain(gateway)
    assert_once(moto, bucket, gateway)


def kill(gateway: GatewayProcess) -> None:
    gateway.signal(signal.SIGKILL)
    assert gateway.process is not None
    gateway.process.wait(10)


def restart_and_drain(gateway: GatewayProcess) -> None:
    """Start again, seal a little more, stop once every sealed segment is archived."""
    gateway.start()
    busy(gateway, 10)
    assert wait_for(lambda: {f"gw/segments/{p.name}" for p in sealed(gateway)}
                    <= {e["key"] for e in entries(gateway, "archived")}), gateway.log()
    assert gateway.stop() == 0


def assert_once(moto: S3Server, bucket: str, gateway: GatewayProcess) -> None:
    """One object version and one ``archived`` entry per key."""
    versions = moto.client().list_object_versions(Bucket=bucket, Prefix="gw/")
    keys = [v["Key"] for v in versions.get("Versions", [])]
    assert len(keys) == len(set(keys)), "an object was uploaded twice"
    assert not versions.get("DeleteMarkers")
    journaled = [e["key"] for e in entries(gateway, "archived")]
    assert len(journaled) == len(set(journaled)), "an object was journaled twice"
    assert set(journaled) == set(keys)
