"""TLS towards clients (with SCRAM channel binding) and every upstream auth method."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ClusterInfo
from tests.e2e.harness import GatewayProcess, psql
from tests.pki import ca_and_server_cert, self_signed_cert


@pytest.fixture
def tls_gateway(start_gateway: Callable[..., GatewayProcess], tmp_path: Path) -> GatewayProcess:
    cert, key = self_signed_cert(tmp_path)
    return start_gateway({"tls": {"cert": str(cert), "key": str(key), "require": True}})


def tls_psql(gateway: GatewayProcess, sql: str, **params: str) -> subprocess.CompletedProcess[str]:
    dsn = gateway.dsn("alice", **params)
    return subprocess.run(["psql", "-X", "-At", "-d", dsn, "-c", sql], capture_output=True,
                          text=True, timeout=30)


def test_tls_with_scram_channel_binding(tls_gateway: GatewayProcess) -> None:
    result = tls_psql(tls_gateway, "SELECT count(*) FROM departments",
                      sslmode="require", channel_binding="require")
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 0
    assert "SCRAM-SHA-256-PLUS" in tls_gateway.log()


def test_tls_required_refuses_plaintext(tls_gateway: GatewayProcess) -> None:
    result = tls_psql(tls_gateway, "SELECT 1", sslmode="disable")
    assert result.returncode != 0
    assert "TLS is required" in result.stderr


def test_wrong_password_over_tls(tls_gateway: GatewayProcess) -> None:
    dsn = tls_gateway.dsn("alice", password="nope", sslmode="require")
    result = subprocess.run(["psql", "-X", "-d", dsn, "-c", "SELECT 1"], capture_output=True,
                            text=True, timeout=30)
    assert 'password authentication failed for user "alice"' in result.stderr


@pytest.mark.parametrize("method", ["md5", "plain", "trust"])
def test_upstream_auth_methods(start_gateway: Callable[..., GatewayProcess],
                               pg_cluster: ClusterInfo, method: str) -> None:
    user = getattr(pg_cluster, f"{method}_user")
    database: dict[str, object] = {"user": user}
    env = {}
    if method == "trust":
        database["password_env"] = None
    else:
        env["CLINIC_DB_PASSWORD"] = getattr(pg_cluster, f"{method}_password")
    gateway = start_gateway({"databases": {"clinic": database}}, env=env)
    result = psql(gateway, "SELECT current_user")
    assert result.returncode == 0, result.stderr + gateway.log()
    assert result.stdout.strip() == user


def test_wrong_service_password_is_08006_and_hides_details(
        start_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_gateway(env={"CLINIC_DB_PASSWORD": "definitely-wrong"})
    result = psql(gateway, "SELECT 1")
    assert result.returncode != 0
    assert "upstream database refused the gateway's connection" in result.stderr
    assert "phigate_svc" not in result.stderr


def test_upstream_tls_require(start_gateway: Callable[..., GatewayProcess],
                              pg_cluster: ClusterInfo, tmp_path: Path) -> None:
    # The test cluster has no server certificate, so "require" must refuse, never downgrade.
    gateway = start_gateway({"databases": {"clinic": {"tls": "require"}}})
    result = psql(gateway, "SELECT 1")
    assert result.returncode != 0
    assert "could not connect to the upstream database" in result.stderr or \
        "does not accept TLS" in result.stderr


def test_fallback_database_forwards_any_name(start_gateway: Callable[..., GatewayProcess],
                                             pg_cluster: ClusterInfo) -> None:
    gateway = start_gateway({"databases": {"*": {
        "host": pg_cluster.host, "port": pg_cluster.port, "user": pg_cluster.service_user,
        "password_env": "CLINIC_DB_PASSWORD"}}})
    for dbname in ("clinic", "postgres"):
        result = subprocess.run(["psql", "-X", "-At", "-d", gateway.dsn("alice", dbname=dbname),
                                 "-c", "SELECT current_database()"],
                                capture_output=True, text=True, timeout=30)
        assert result.stdout.strip() == dbname, result.stderr


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ClusterInfo, Path]]:
    """A second PostgreSQL that serves TLS, so upstream TLS modes meet a real server."""
    from tests.conftest import TempCluster, _provision

    directory = tmp_path_factory.mktemp("upstream-tls")
    ca_path, cert_pem, key_pem = ca_and_server_cert(directory)
    with TempCluster() as cluster:
        info = _provision(cluster)
        cluster.enable_tls(cert_pem, key_pem)
        yield info, ca_path


@pytest.mark.parametrize("mode", ["require", "verify-full"])
def test_upstream_tls_with_channel_binding(start_gateway: Callable[..., GatewayProcess],
                                           tls_cluster: tuple[ClusterInfo, Path],
                                           mode: str) -> None:
    cluster, ca_path = tls_cluster
    database = {"host": "127.0.0.1", "port": cluster.port, "tls": mode}
    if mode == "verify-full":
        database["ca"] = str(ca_path)
    gateway = start_gateway({"databases": {"clinic": database}},
                            env={"CLINIC_DB_PASSWORD": cluster.service_password})
    result = psql(gateway, "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    assert result.returncode == 0, result.stderr + gateway.log()
    assert result.stdout.strip().startswith("t|TLSv1.")


def test_upstream_verify_full_refuses_an_unknown_ca(
        start_gateway: Callable[..., GatewayProcess], tls_cluster: tuple[ClusterInfo, Path],
        tmp_path: Path) -> None:
    cluster, _ = tls_cluster
    other_ca, _, _ = ca_and_server_cert(tmp_path)  # a CA that did not sign the server
    gateway = start_gateway({"databases": {"clinic": {
        "host": "127.0.0.1", "port": cluster.port, "tls": "verify-full", "ca": str(other_ca)}}},
        env={"CLINIC_DB_PASSWORD": cluster.service_password})
    result = psql(gateway, "SELECT 1")
    assert result.returncode != 0
    assert "could not connect to the upstream database" in result.stderr
