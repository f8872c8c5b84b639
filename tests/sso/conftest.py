"""Fixtures for the SSO tests: TLS gateways that trust the real OpenID provider (``idp``, in
the top-level conftest: the console tests sign in with it too)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ClusterInfo
from tests.e2e.harness import GatewayProcess, deep_merge
from tests.pki import self_signed_cert
from tests.sso.idp import IdentityProvider

PHIGATE = str(Path(sys.executable).with_name("phigate"))  # the installed entry point


@pytest.fixture(scope="session")
def gateway_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("gateway-tls"))


def sso_config(idp: IdentityProvider, cert: tuple[Path, Path], **sso: Any) -> dict[str, Any]:
    return {
        "tls": {"cert": str(cert[0]), "key": str(cert[1])},
        "sso": {"issuer": idp.issuer, "client_id": "phigate", "ca": str(idp.ca),
                "leeway": "0s", "jwks_refresh_floor": "2s", **sso},
        # Negative tests fail many logins from 127.0.0.1; the limiter has its own tests.
        "limits": {"auth_failure_delay": "10ms", "auth_max_failures": 1000},
    }


@pytest.fixture(scope="session")
def sso_gateway(pg_cluster: ClusterInfo, idp: IdentityProvider, gateway_cert: tuple[Path, Path],
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("sso-gateway"), pg_cluster,
                             sso_config(idp, gateway_cert)).start()
    yield process
    process.stop()


@pytest.fixture
def start_sso_gateway(pg_cluster: ClusterInfo, idp: IdentityProvider,
                      gateway_cert: tuple[Path, Path], tmp_path: Path
                      ) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def start(extra: dict[str, Any] | None = None, **sso: Any) -> GatewayProcess:
        config = deep_merge(sso_config(idp, gateway_cert, **sso), extra or {})
        process = GatewayProcess(tmp_path / f"gw{len(started)}", pg_cluster, config).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def token_psql(gateway: GatewayProcess, user: str, token: str, sql: str = "SELECT 1",
               sslmode: str = "require", timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Real psql with the token as its password (PGPASSWORD, as ``phigate login`` sets it)."""
    dsn = (f"host=127.0.0.1 port={gateway.port} dbname=clinic user='{user}' "
           f"sslmode={sslmode}")
    return subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", sql],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PGPASSWORD": token})


def phigate(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
            ) -> subprocess.CompletedProcess[str]:
    assert shutil.which(PHIGATE), "the phigate entry point is not installed"
    return subprocess.run([PHIGATE, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
