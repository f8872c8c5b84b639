"""The masking hash key through ``phigate serve`` with psql: stable pseudonyms that rotate.

With ``masking.hash_key_file`` (made by ``phigate keygen --masking-key``) an engineer's hashed
email of patient 7 is the same after a restart, different under another key or after a SIGHUP
that points at one, and different in another database unless ``hash_domains`` joins them.
Without a key file the pseudonyms live as long as the process.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ClusterInfo
from tests.e2e.harness import PHIGATE, GatewayProcess

POLICY = """\
phi_tables: ["*.public.patients"]
phi_columns:
  "*.public.patients": [ssn, mrn, first_name, last_name, phone, email, address_line,
                        date_of_birth]
rules:
  - name: engineers-phi-masked
    groups: [engineers]
    allow: [select, transaction, session]
    phi: masked
masking:
  - name: engineers-see-hashed
    groups: [engineers]
    columns:
      "*.public.patients.email": hash
      "*.public.patients.*": redact
"""
EMAIL_7 = "SELECT email FROM patients WHERE id = 7"


def _keygen(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PHIGATE), "keygen", "--masking-key", str(path)],
                          capture_output=True, text=True, timeout=60)


def _pseudonym(gateway: GatewayProcess, dbname: str = "clinic") -> str:
    result = subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d",
                             gateway.dsn("bob", dbname=dbname), "-c", EMAIL_7],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    value = result.stdout.strip()
    assert len(value) == 16 and "@" not in value, value
    return value


@pytest.fixture()
def work(tmp_path: Path, pg_cluster: ClusterInfo) -> Path:
    (tmp_path / "masking.yaml").write_text(POLICY)
    return tmp_path


def _gateway(work: Path, pg_cluster: ClusterInfo, masking: dict[str, object] | None
             ) -> GatewayProcess:
    clinic = {"host": pg_cluster.host, "port": pg_cluster.port, "dbname": pg_cluster.database,
              "user": pg_cluster.service_user, "password_env": "CLINIC_DB_PASSWORD"}
    overrides: dict[str, object] = {"policies": [str(work / "masking.yaml")],
                                    "databases": {"clinic": clinic, "clinic2": clinic}}
    if masking is not None:
        overrides["masking"] = masking
    return GatewayProcess(work / "gw", pg_cluster, overrides)


def test_keygen_writes_an_owner_only_key_once(work: Path) -> None:
    path = work / "keys" / "masking.key"
    made = _keygen(path)
    assert made.returncode == 0 and "masking hash key" in made.stdout, made.stderr
    assert path.stat().st_mode & 0o777 == 0o600
    again = _keygen(path)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_same_pseudonym_across_a_restart_other_key_other_pseudonym(
        work: Path, pg_cluster: ClusterInfo) -> None:
    first, second = work / "k1.key", work / "k2.key"
    assert _keygen(first).returncode == 0 and _keygen(second).returncode == 0
    gateway = _gateway(work, pg_cluster, {"hash_key_file": str(first)}).start()
    try:
        before = _pseudonym(gateway)
        other_db = _pseudonym(gateway, "clinic2")  # same upstream rows, another database
        assert other_db != before
        assert gateway.stop() == 0
        gateway.start()
        assert _pseudonym(gateway) == before  # persistent across a restart
        gateway.config["masking"] = {"hash_key_file": str(second)}
        gateway.config_path.write_text(yaml.safe_dump(gateway.config))
        gateway.signal(signal.SIGHUP)  # rotation: new statements use the new key
        rotated = _wait_for_change(gateway, before)
        assert gateway.stop() == 0
        gateway.start()
        assert _pseudonym(gateway) == rotated  # stable under the new key too
        first.chmod(0o644)  # a key others can read is refused on SIGHUP: the old key stays
        gateway.config["masking"] = {"hash_key_file": str(first)}
        gateway.config_path.write_text(yaml.safe_dump(gateway.config))
        gateway.signal(signal.SIGHUP)
        time.sleep(1.0)
        assert _pseudonym(gateway) == rotated
        assert "chmod 600" in gateway.log()
    finally:
        gateway.stop()


def test_hash_domains_make_databases_correlate(work: Path, pg_cluster: ClusterInfo) -> None:
    key = work / "k.key"
    assert _keygen(key).returncode == 0
    masking = {"hash_key_file": str(key), "hash_domains": {"clinic": "care", "clinic2": "care"}}
    gateway = _gateway(work, pg_cluster, masking).start()
    try:
        assert _pseudonym(gateway) == _pseudonym(gateway, "clinic2")
    finally:
        gateway.stop()


def test_without_a_key_file_pseudonyms_last_one_process(work: Path,
                                                        pg_cluster: ClusterInfo) -> None:
    gateway = _gateway(work, pg_cluster, None).start()
    try:
        before = _pseudonym(gateway)
        assert _pseudonym(gateway) == before  # stable across sessions
        gateway.stop()
        gateway.start()
        assert _pseudonym(gateway) != before
    finally:
        gateway.stop()


def test_check_config_names_the_key_problem(work: Path, pg_cluster: ClusterInfo) -> None:
    loose = work / "loose.key"
    assert _keygen(loose).returncode == 0
    loose.chmod(0o640)
    gateway = _gateway(work, pg_cluster, {"hash_key_file": str(loose)})
    gateway.config_path.write_text(yaml.safe_dump(gateway.config))
    result = subprocess.run([str(PHIGATE), "check-config", "-c", str(gateway.config_path)],
                            capture_output=True, text=True, timeout=60,
                            env=gateway.env)
    assert result.returncode == 2
    assert "masking.hash_key_file:" in result.stderr and "chmod 600" in result.stderr


def _wait_for_change(gateway: GatewayProcess, old: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = _pseudonym(gateway)
        if now != old:
            return now
        time.sleep(0.2)
    raise AssertionError(f"the pseudonym did not change after SIGHUP:\n{gateway.log()}")
