"""Running ``phigate serve`` as a real subprocess for end-to-end tests.

Owns config generation for the test identities, process start-up (waits for
the listening port), log capture and shutdown. Clients in tests are real:
psql, asyncpg, pg8000 and psycopg connect to the port it reports.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.journal.keys import generate as generate_keys
from gateway.journal.keys import key_paths
from protocols.postgres.scram import make_verifier
from tests.conftest import ClusterInfo

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CLINIC_POLICY = REPO / "examples" / "policies" / "clinic.yaml"
# The installed console script (pyproject [project.scripts]), next to the venv's python.
PHIGATE = Path(sys.executable).parent / "phigate"


@dataclass(frozen=True)
class Identity:
    name: str
    password: str = field(repr=False)
    groups: tuple[str, ...]


IDENTITIES = {
    "alice": Identity("alice", "alice-correct-horse", ("clinicians",)),
    "bob": Identity("bob", "bob-battery-staple", ("engineers",)),
    "oncall": Identity("oncall", "oncall-break-glass", ("sre",)),
}

_VERIFIERS: dict[str, str] = {}


def verifier(identity: Identity) -> str:
    """SCRAM verifiers are slow to derive on purpose; make each once per test run."""
    if identity.name not in _VERIFIERS:
        _VERIFIERS[identity.name] = make_verifier(identity.password)
    return _VERIFIERS[identity.name]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_config(cluster: ClusterInfo, port: int, workdir: Path) -> dict[str, Any]:
    private_key, _ = key_paths(workdir / "keys" / "journal")
    if not private_key.exists():
        generate_keys(workdir / "keys" / "journal")
    (workdir / "witness").mkdir(exist_ok=True)
    return {
        "listen": f"127.0.0.1:{port}",
        "journal": {"dir": str(workdir / "journal"), "signing_key": str(private_key),
                    "checkpoint_copies": [str(workdir / "witness")]},
        "databases": {
            "clinic": {"host": cluster.host, "port": cluster.port, "dbname": cluster.database,
                       "user": cluster.service_user, "password_env": "CLINIC_DB_PASSWORD"},
        },
        "users": {i.name: {"password": verifier(i), "groups": list(i.groups)}
                  for i in IDENTITIES.values()},
        "limits": {"auth_failure_delay": "50ms"},
        "policies": [str(FIXTURES / "allow-all.yaml")],
    }


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        elif value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


class GatewayProcess:
    """``phigate serve -c CONFIG`` in a subprocess, logging to a file."""

    def __init__(self, workdir: Path, cluster: ClusterInfo, overrides: dict[str, Any] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.cluster = cluster
        self.port = free_port()
        self.config = deep_merge(base_config(cluster, self.port, workdir), overrides or {})
        self.config_path = workdir / "phigate.yaml"
        self.log_path = workdir / "gateway.log"
        self.env = {**os.environ, "CLINIC_DB_PASSWORD": cluster.service_password, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def journal_dir(self) -> Path:
        return Path(self.config["journal"]["dir"])

    @property
    def public_key(self) -> Path:
        return self.workdir / "keys" / "journal.pub"

    def start(self, timeout: float = 15.0) -> GatewayProcess:
        self.config_path.write_text(yaml.safe_dump(self.config), encoding="utf-8")
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [str(PHIGATE), "serve", "-c", str(self.config_path)],
                cwd=REPO, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited {self.process.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"gateway did not start listening:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def dsn(self, user: str = "alice", password: str | None = None, dbname: str = "clinic",
            **params: str) -> str:
        secret = IDENTITIES[user].password if password is None and user in IDENTITIES else password
        parts = {"host": "127.0.0.1", "port": str(self.port), "dbname": dbname, "user": user,
                 "password": secret or "", "sslmode": "disable", **params}
        return " ".join(f"{k}='{v}'" for k, v in parts.items())

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def psql(gateway: GatewayProcess, sql: str | None = None, *, user: str = "alice",
         password: str | None = None, args: tuple[str, ...] = (), stdin: str | None = None,
         timeout: float = 60.0, env: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess[str]:
    """Run real psql against the gateway; returns the completed process."""
    command = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-d",
               gateway.dsn(user, password), *args]
    if sql is not None:
        command += ["-c", sql]
    return subprocess.run(command, input=stdin, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def phigate_json(gateway: GatewayProcess, *filters: str) -> list[dict[str, Any]]:
    """``phigate journal show DIR --json`` of a gateway's journal, parsed."""
    result = subprocess.run([str(PHIGATE), "journal", "show", str(gateway.journal_dir),
                             "--json", *filters], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def phigate_verify(gateway: GatewayProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PHIGATE), "journal", "verify", str(gateway.journal_dir), "--key",
                           str(gateway.public_key)], capture_output=True, text=True, timeout=60)
