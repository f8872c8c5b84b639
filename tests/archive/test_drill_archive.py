"""The audit drill with an archive: the drill's segment must reach it within ``archive_within``.

Through the installed gateway and ``phigate drill`` against the moto server process
(behind a TCP relay the test can switch off): segments are large, so only the drill's
seal request closes the active one; the drill passes once its segment is archived and a
HEAD confirms the recorded version, digest and lock. With the store unreachable, the same
drill fails that check (exit 1), the failure is journaled and counted.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.archive.conftest import archive_overrides
from tests.archive.s3servers import CREDENTIALS, NetFault, S3Server
from tests.drill.test_drill_e2e import DRILL_PASSWORD, drill_overrides, journal, metric
from tests.e2e.harness import PHIGATE, REPO, GatewayProcess, deep_merge


def run_drill(gateway: GatewayProcess, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PHIGATE), "drill", "-c", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=gateway.env)


def test_drill_segment_reaches_the_archive_in_time_or_the_drill_fails(
        moto: S3Server, fault: NetFault, archived_gateway: Callable[..., GatewayProcess],
        tmp_path: Path) -> None:
    bucket = moto.bucket()
    overrides = deep_merge(archive_overrides(fault.endpoint, bucket),
                           drill_overrides(tmp_path, recordings=False, archive_within="30s"))
    overrides["journal"]["segment_max_bytes"] = 8 * 1024 * 1024  # never sealed by size here
    env = {**CREDENTIALS, "PHIGATE_DRILL_PASSWORD": DRILL_PASSWORD}
    gateway = archived_gateway(moto, overrides, aws_env=env)

    result = run_drill(gateway, gateway.config_path)
    assert result.returncode == 0, result.stdout + result.stderr + gateway.log()
    assert "PASS  archive: drill segment" in result.stdout
    report = json.loads(Path(result.stdout.split("report: ")[1].split()[0]).read_bytes())
    [check] = [c for c in report["checks"] if c["name"] == "archive: drill segment"]
    assert check["seconds"] < 30 and "confirmed" in check["detail"]
    [archived_seq] = check["seqs"]
    [entry] = [e for e in journal(gateway, "archived") if e["seq"] == archived_seq]
    segment = gateway.journal_dir / entry["key"].rsplit("/", 1)[1]
    assert segment.stat().st_mode & 0o222 == 0  # sealed at the drill's request
    head = moto.client().head_object(Bucket=bucket, Key=entry["key"],
                                     VersionId=entry["version_id"])
    assert head["ObjectLockMode"] == "COMPLIANCE"

    # The store goes away: the drill's next segment cannot be archived within 1 s.
    impatient = tmp_path / "impatient.yaml"
    config = yaml.safe_load(gateway.config_path.read_text(encoding="utf-8"))
    config["drill"]["archive_within"] = "1s"
    impatient.write_text(yaml.safe_dump(config), encoding="utf-8")
    fault.down()
    result = run_drill(gateway, impatient)
    assert result.returncode == 1, result.stdout
    assert "FAIL  archive: drill segment: not in the archive within 1 s" in result.stdout
    # (Its "alerts fired" fails too: the brute-force alert does not repeat within its window.)
    assert "drill FAILED" in result.stdout, result.stdout
    failed = [e for e in journal(gateway, "drill") if not e["passed"]]
    assert failed and "archive: drill segment" in failed[-1]["failed_checks"], result.stdout
    assert metric(gateway, "phigate_drill_failures_total") == 1
    fault.up()
