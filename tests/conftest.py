"""Session-wide fixtures: one real, temporary PostgreSQL shared by every integration test.

Owns the ``pg_cluster`` fixture, which starts a ``TempCluster`` once per pytest session, loads the
synthetic clinic data set into database ``clinic`` and creates one upstream role per password
method the gateway must speak (scram-sha-256, md5, cleartext, trust). Tests receive a frozen
``ClusterInfo``; the cluster is stopped and deleted when the session ends. Also ``idp``: the
real OpenID provider (``tests/sso/idp.py``) the SSO and the console tests share.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.demo.demo_data import clinic_sql, grant_service_role_sql
from gateway.demo.tempcluster import PostgresNotFound, TempCluster
from tests.sso.idp import IdentityProvider, IdentityProviderMissing

CLINIC_DB = "clinic"
CLINIC_PATIENTS = 200


@dataclass(frozen=True)
class ClusterInfo:
    """Where the session's PostgreSQL listens and which credentials it accepts."""

    host: str
    port: int
    database: str
    socket_dir: Path
    superuser: str
    superuser_password: str = field(repr=False)
    superuser_dsn: str = field(repr=False)
    service_user: str  # scram-sha-256
    service_password: str = field(repr=False)
    md5_user: str
    md5_password: str = field(repr=False)
    plain_user: str  # pg_hba method "password": cleartext on the wire
    plain_password: str = field(repr=False)
    trust_user: str  # no password at all
    patients: int
    cluster: TempCluster = field(repr=False, compare=False)

    def dsn(self, user: str | None = None, password: str | None = None,
            dbname: str | None = None) -> str:
        """A libpq URI for ``user`` (the service role by default) on the clinic database."""
        if user is None:
            user, password = self.service_user, self.service_password
        return self.cluster.dsn(dbname or self.database, user, password)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[ClusterInfo]:
    try:
        cluster = TempCluster()
    except PostgresNotFound as e:
        # CI must prove the integration tests ran; a laptop without PostgreSQL may skip them.
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {e}")
        pytest.skip(f"PostgreSQL not installed: {e}")
    with cluster:
        yield _provision(cluster)


def _provision(cluster: TempCluster) -> ClusterInfo:
    passwords = {role: secrets.token_urlsafe(16)
                 for role in ("phigate_svc", "svc_md5", "svc_plain")}
    cluster.create_database(CLINIC_DB)
    cluster.add_role("phigate_svc", passwords["phigate_svc"])
    cluster.add_role("svc_md5", passwords["svc_md5"], auth="md5")
    cluster.add_role("svc_plain", passwords["svc_plain"], auth="password")
    cluster.add_role("svc_trust", None, auth="trust")
    grants = "".join(grant_service_role_sql(role)
                     for role in ("phigate_svc", "svc_md5", "svc_plain", "svc_trust"))
    # Loading and granting in one psql run keeps session start-up well under the 5 s budget.
    cluster.execute(clinic_sql(patients=CLINIC_PATIENTS) + grants, dbname=CLINIC_DB)
    return ClusterInfo(
        host=cluster.host, port=cluster.port, database=CLINIC_DB, socket_dir=cluster.socket_dir,
        superuser=cluster.superuser, superuser_password=cluster.superuser_password,
        superuser_dsn=cluster.dsn(CLINIC_DB),
        service_user="phigate_svc", service_password=passwords["phigate_svc"],
        md5_user="svc_md5", md5_password=passwords["svc_md5"],
        plain_user="svc_plain", plain_password=passwords["svc_plain"],
        trust_user="svc_trust", patients=CLINIC_PATIENTS, cluster=cluster,
    )


@pytest.fixture(scope="session")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityProvider]:
    from tests.e2e.harness import free_port  # the harness imports this module

    try:
        provider = IdentityProvider(tmp_path_factory.mktemp("idp"), free_port())
    except IdentityProviderMissing as e:
        if os.environ.get("CI"):
            pytest.fail(f"the OpenID provider is required in CI: {e}")
        pytest.skip(str(e))
    yield provider.start()
    provider.stop()
