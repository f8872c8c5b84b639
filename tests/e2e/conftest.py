"""Fixtures for end-to-end tests: a shared gateway subprocess and a factory for custom ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ClusterInfo
from tests.e2e.harness import GatewayProcess


@pytest.fixture(scope="session")
def gateway(pg_cluster: ClusterInfo, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[GatewayProcess]:
    """One gateway with the default test config, shared by tests that do not change it."""
    process = GatewayProcess(tmp_path_factory.mktemp("gateway"), pg_cluster).start()
    yield process
    process.stop()


@pytest.fixture
def start_gateway(pg_cluster: ClusterInfo, tmp_path: Path
                  ) -> Iterator[Callable[..., GatewayProcess]]:
    """Start gateways with config overrides; all are stopped after the test."""
    started: list[GatewayProcess] = []

    def start(overrides: dict[str, Any] | None = None, *, env: dict[str, str] | None = None,
              name: str = "gw") -> GatewayProcess:
        process = GatewayProcess(tmp_path / f"{name}{len(started)}", pg_cluster, overrides,
                                 env).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="session")
def service_may_create(pg_cluster: ClusterInfo) -> ClusterInfo:
    """The service role may create schemas and roles, as regression-style scripts need."""
    pg_cluster.cluster.execute(
        f"GRANT CREATE ON DATABASE {pg_cluster.database} TO {pg_cluster.service_user};\n"
        f"ALTER ROLE {pg_cluster.service_user} CREATEROLE;\n", dbname=pg_cluster.database)
    return pg_cluster
