"""A minimal PostgreSQL client for the drill: log in through the gateway, run simple queries.

It reuses the proxy's upstream connector (SCRAM-SHA-256, TLS) pointed at the
gateway's own listener, so the drill exercises exactly what a person's client
does. Driven by :mod:`.run`.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.postgres import messages as m
from protocols.postgres.decoder import decode_backend
from protocols.postgres.encoder import encode

from ..proxy.upstream import Upstream, connect_upstream
from ..settings.config import DatabaseSettings, Settings
from ..settings.values import Secret

MAX_MESSAGE = 64 * 1024 * 1024  # the drill's own statements return a few small rows


@dataclass(frozen=True, slots=True)
class Result:
    rows: int
    sqlstate: str | None


def target(settings: Settings, user: str, password: Secret, database: str) -> DatabaseSettings:
    host = "127.0.0.1" if settings.listen_host in ("0.0.0.0", "::", "") else settings.listen_host
    return DatabaseSettings(name=database, host=host, port=settings.listen_port,
                            dbname=database, user=user, password=password,
                            tls="require" if settings.tls is not None else "disable")


async def login(db: DatabaseSettings) -> Upstream:
    """An authenticated session; GatewayError (UpstreamRejected: the gateway's refusal)."""
    return await connect_upstream(db, db.dbname or db.name,
                                  {"application_name": "phigate-drill"}, MAX_MESSAGE)


async def query(session: Upstream, sql: str) -> Result:
    await session.stream.send(encode(m.Query(sql=sql)))
    rows, sqlstate = 0, None
    while True:
        message = decode_backend(await session.stream.read_frame())
        if isinstance(message, m.DataRow):
            rows += 1
        elif isinstance(message, m.ErrorResponse):
            sqlstate = message.sqlstate
        elif isinstance(message, m.ReadyForQuery):
            return Result(rows, sqlstate)


async def close(session: Upstream) -> None:
    try:
        await session.stream.send(encode(m.Terminate()))
    except OSError:
        pass
    session.stream.close()
