"""Operating the gateway: check-config, passwd, SIGHUP reload, SIGTERM drain, options."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pg8000.dbapi
import pytest
import yaml

from tests.conftest import ClusterInfo
from tests.e2e.harness import IDENTITIES, PHIGATE, REPO, GatewayProcess, psql


def phigate(*args: str, stdin: str | None = None, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PHIGATE), *args], cwd=REPO, input=stdin,
                          capture_output=True, text=True, timeout=60, env=env)


def test_check_config_accepts_a_valid_file(gateway: GatewayProcess) -> None:
    result = phigate("check-config", "-c", str(gateway.config_path), env=gateway.env)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    # Serving needs the upstream secret, so checking without it is an error too.
    missing = {k: v for k, v in gateway.env.items() if k != "CLINIC_DB_PASSWORD"}
    result = phigate("check-config", "-c", str(gateway.config_path), env=missing)
    assert result.returncode == 2
    assert "CLINIC_DB_PASSWORD is not set" in result.stderr


def test_check_config_names_file_line_and_key(gateway: GatewayProcess, tmp_path: Path) -> None:
    config = yaml.safe_load(gateway.config_path.read_text())
    config["databases"]["clinic"]["pasword_env"] = "TYPO"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config, sort_keys=False))
    result = phigate("check-config", "-c", str(bad), env=gateway.env)
    assert result.returncode == 2
    line = next(i for i, text in enumerate(bad.read_text().splitlines(), 1)
                if "pasword_env" in text)
    assert f"{bad}:{line}: databases.clinic.pasword_env: unknown key" in result.stderr


def test_passwd_prints_a_verifier_that_logs_in(start_gateway: Callable[..., GatewayProcess]
                                               ) -> None:
    result = phigate("passwd", stdin="carol-secret\n")
    assert result.returncode == 0, result.stderr
    verifier = result.stdout.strip()
    assert verifier.startswith("SCRAM-SHA-256$4096:") and "carol-secret" not in verifier
    gateway = start_gateway({"users": {"carol": {"password": verifier}}})
    assert psql(gateway, "SELECT 1", user="carol", password="carol-secret").stdout.strip() == "1"


def test_non_ascii_password_logs_in_as_text_or_bytes(
        start_gateway: Callable[..., GatewayProcess], pg_cluster: ClusterInfo) -> None:
    # pg8000's test_password_bytes with its role defined as a gateway identity: "cha\uff6fs",
    # sent as text or as UTF-8 bytes, logs in (SASLprep's NFKC on both ends), and a database
    # the upstream lacks is the server's own 3D000 after the login, as directly.
    password = "cha\uff6fs"
    verifier = phigate("passwd", stdin=password + "\n").stdout.strip()
    fallback = {"host": pg_cluster.host, "port": pg_cluster.port,
                "user": pg_cluster.service_user, "password_env": "CLINIC_DB_PASSWORD"}
    gateway = start_gateway({"users": {"boltzmann": {"password": verifier}},
                             "databases": {"*": fallback}})
    login = {"host": "127.0.0.1", "port": gateway.port, "user": "boltzmann"}
    for secret in (password, password.encode()):
        with pg8000.dbapi.connect(**login, password=secret, database="clinic") as conn:
            cursor = conn.cursor()
            cursor.execute("SELECT current_database()")
            assert cursor.fetchone() == ["clinic"]
    assert psql(gateway, "SELECT 1", user="boltzmann", password=password).stdout.strip() == "1"
    with pytest.raises(pg8000.dbapi.DatabaseError, match="3D000"):
        pg8000.dbapi.connect(**login, password=password.encode(), database="pg8000_md5")
    with pytest.raises(pg8000.dbapi.DatabaseError, match="28P01"):
        pg8000.dbapi.connect(**login, password="cha\u30c3z", database="clinic")


def test_sighup_reloads_users_without_dropping_sessions(
        start_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_gateway()

    async def scenario() -> None:
        session = await asyncpg.connect(host="127.0.0.1", port=gateway.port, user="alice",
                                        password=IDENTITIES["alice"].password,
                                        database="clinic", ssl=False)
        try:
            config = yaml.safe_load(gateway.config_path.read_text())
            config["users"]["dave"] = {"password": phigate(
                "passwd", stdin="dave-secret\n").stdout.strip()}
            del config["users"]["bob"]
            gateway.config_path.write_text(yaml.safe_dump(config))
            gateway.signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while "configuration reloaded" not in gateway.log():
                assert time.monotonic() < deadline, gateway.log()
                await asyncio.sleep(0.05)
            assert await session.fetchval("SELECT 'still here'") == "still here"
        finally:
            await session.close()

    asyncio.run(scenario())
    assert psql(gateway, "SELECT 1", user="dave", password="dave-secret").returncode == 0
    assert psql(gateway, "SELECT 1", user="bob").returncode != 0


def test_sighup_with_a_broken_config_keeps_the_old_one(
        start_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_gateway()
    gateway.config_path.write_text("listen: [not, valid\n")
    gateway.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload failed" not in gateway.log():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert psql(gateway, "SELECT 1").returncode == 0


def test_sigterm_drains_then_closes_remaining_sessions(
        start_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_gateway({"limits": {"shutdown_grace": "2s"}})

    async def scenario() -> None:
        session = await asyncpg.connect(host="127.0.0.1", port=gateway.port, user="alice",
                                        password=IDENTITIES["alice"].password,
                                        database="clinic", ssl=False)
        gateway.signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        # Within the grace period the session still works; new connections are refused.
        assert await session.fetchval("SELECT 1") == 1
        with pytest.raises(OSError):
            await asyncpg.connect(host="127.0.0.1", port=gateway.port, user="bob",
                                  password=IDENTITIES["bob"].password, database="clinic",
                                  ssl=False, timeout=2)
        with pytest.raises((asyncpg.AdminShutdownError, asyncpg.ConnectionDoesNotExistError)):
            await session.fetchval("SELECT pg_sleep(10)")
        session.terminate()

    asyncio.run(scenario())
    assert gateway.process is not None
    assert gateway.process.wait(10) == 0


def test_startup_options_are_forwarded_and_reason_is_consumed(gateway: GatewayProcess) -> None:
    result = psql(gateway, "SHOW statement_timeout; SHOW search_path",
                  env={"PGOPTIONS": "-c statement_timeout=1234 -c phigate.reason=INC-42 "
                                    "--search_path=public"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1234ms", "public"]


def test_client_parameters_reach_the_upstream(gateway: GatewayProcess) -> None:
    result = psql(gateway, "SHOW DateStyle; SHOW client_encoding",
                  env={"PGDATESTYLE": "SQL, DMY", "PGCLIENTENCODING": "UTF8"})
    assert result.stdout.split() == ["SQL,", "DMY", "UTF8"]


def test_idle_sessions_are_closed_after_the_idle_timeout(
        start_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_gateway({"limits": {"idle_timeout": "1s"}})

    async def scenario() -> None:
        session = await asyncpg.connect(host="127.0.0.1", port=gateway.port, user="alice",
                                        password=IDENTITIES["alice"].password,
                                        database="clinic", ssl=False)
        try:
            # Busy is not idle: a statement running longer than the timeout completes.
            assert await session.fetchval("SELECT 1 FROM pg_sleep(1.5)") == 1
            await asyncio.sleep(2.5)
            with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError,
                                ConnectionError)):
                await session.fetchval("SELECT 1")
        finally:
            session.terminate()

    asyncio.run(scenario())
    assert "idle_timeout" in gateway.log()


def test_serve_refuses_to_start_without_a_journal(gateway: GatewayProcess,
                                                  tmp_path: Path) -> None:
    config = yaml.safe_load(gateway.config_path.read_text())
    del config["journal"]
    path = tmp_path / "nojournal.yaml"
    path.write_text(yaml.safe_dump(config))
    result = phigate("serve", "-c", str(path), env=gateway.env)
    assert result.returncode == 2
    assert "journal" in result.stderr and "required" in result.stderr


def test_upstream_application_name_template(start_gateway: Callable[..., GatewayProcess]
                                            ) -> None:
    gateway = start_gateway({"upstream_application_name": "{application_name} ({identity})"})
    result = psql(gateway, "SHOW application_name", env={"PGAPPNAME": "billing"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "billing (alice)"


def test_upstream_application_name_rejects_unknown_placeholders(
        gateway: GatewayProcess, tmp_path: Path) -> None:
    bad = tmp_path / "phigate.yaml"
    config = dict(gateway.config, upstream_application_name="phigate/{user}")
    bad.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = phigate("check-config", "-c", str(bad), env=gateway.env)
    assert result.returncode == 2
    assert "upstream_application_name" in result.stderr and "{user}" in result.stderr
