"""Alert delivery against real local sockets: signatures, retries, bounded queues, journaling."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from gateway.alerts import dispatcher as dispatch
from gateway.alerts.dispatcher import Dispatcher
from gateway.alerts.model import Alert
from gateway.alerts.settings import SinkSettings
from gateway.alerts.sinks import LogSink, SyslogSink, WebhookSink, build_sink
from gateway.settings.values import Secret

SECRET = "s3cret-for-tests"


@dataclass
class Receiver:
    """A tiny HTTP server answering every POST with ``status``; keeps what it received."""

    status: int = 200
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)
                   if k}
        body = await reader.readexactly(int(headers["content-length"]))
        self.requests.append((headers, body))
        writer.write(f"HTTP/1.1 {self.status} X\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    server = await asyncio.start_server(found.handle, "127.0.0.1", 0)
    found.port = server.sockets[0].getsockname()[1]
    yield found
    server.close()
    await server.wait_closed()


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "BACKOFF_BASE_S", 0.01)


def alert(sinks: tuple[str, ...] = ("hook",), n: int = 1) -> Alert:
    return Alert(id=f"a{n}", rule="brute-force", condition="failed_logins",
                 subject="user:alice", summary="5 failed logins", time="2026-01-01T00:00:00Z",
                 sinks=sinks, identity="alice", client_ip="10.0.0.5", session="s1",
                 statement=3, journal_seq=17)


def webhook(port: int, **settings: object) -> SinkSettings:
    return SinkSettings(name="hook", type="webhook", url=f"http://127.0.0.1:{port}/hook",
                        secret=Secret(SECRET), timeout_s=2.0, **settings)  # type: ignore[arg-type]


class Counters:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def alert_fired(self, rule: str) -> None:
        self.events.append(("fired", rule))

    def alert_sent(self, sink: str) -> None:
        self.events.append(("sent", sink))

    def alert_failed(self, sink: str) -> None:
        self.events.append(("failed", sink))

    def alert_dropped(self, sink: str) -> None:
        self.events.append(("dropped", sink))


async def test_webhook_body_is_signed_with_hmac_sha256(receiver: Receiver) -> None:
    await WebhookSink(webhook(receiver.port)).send(alert())
    [(headers, body)] = receiver.requests
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["x-phigate-signature"] == f"sha256={expected}"
    document = json.loads(body)
    assert (document["identity"], document["client_ip"], document["session"],
            document["journal_seq"]) == ("alice", "10.0.0.5", "s1", 17)


async def test_failed_webhook_is_retried_then_journaled_as_failed(receiver: Receiver) -> None:
    receiver.status = 503
    journal: list[tuple[str, dict[str, object]]] = []
    counters = Counters()
    sinks = {"hook": build_sink(webhook(receiver.port, retries=2))}
    dispatcher = Dispatcher(sinks, record=lambda t, f: journal.append((t, f)), counters=counters)
    dispatcher.start()
    dispatcher.fire(alert())
    assert await dispatcher.flush(5.0)
    await dispatcher.stop()
    assert len(receiver.requests) == 3  # first try and two retries
    assert [t for t, _ in journal] == ["alert", "alert_failed"]
    assert journal[0][1]["trigger_seq"] == 17
    assert journal[1][1] == {"alert": "a1", "rule": "brute-force", "sink": "hook",
                             "attempts": 3, "error": "HTTP 503"}
    assert counters.events == [("fired", "brute-force"), ("failed", "hook")]


async def test_client_errors_are_not_retried(receiver: Receiver) -> None:
    receiver.status = 401
    journal: list[str] = []
    dispatcher = Dispatcher({"hook": build_sink(webhook(receiver.port, retries=5))},
                            record=lambda t, f: journal.append(t))
    dispatcher.start()
    dispatcher.fire(alert())
    assert await dispatcher.flush(5.0)
    await dispatcher.stop()
    assert len(receiver.requests) == 1 and journal == ["alert", "alert_failed"]


async def test_full_queue_drops_and_counts_without_waiting() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    counters = Counters()
    journal: list[str] = []
    dispatcher = Dispatcher({"hook": build_sink(webhook(port, retries=0, max_queue=2))},
                            record=lambda t, f: journal.append(t), counters=counters)
    # Not started: nothing drains, so the third and fourth alerts find the queue full.
    for n in range(4):
        dispatcher.fire(alert(n=n))
    assert counters.events.count(("dropped", "hook")) == 2
    assert journal == ["alert"] * 4  # every alert is journaled, delivered or not
    dispatcher.start()
    await dispatcher.stop(grace_s=5.0)
    assert counters.events.count(("failed", "hook")) == 2


async def test_stop_journals_what_could_not_be_sent(receiver: Receiver) -> None:
    receiver.status = 500
    journal: list[tuple[str, dict[str, object]]] = []
    dispatcher = Dispatcher({"hook": build_sink(webhook(receiver.port, retries=50))},
                            record=lambda t, f: journal.append((t, f)))
    dispatcher.start()
    dispatcher.fire(alert())
    await dispatcher.stop(grace_s=0.2)
    assert journal[-1][0] == "alert_failed"
    assert journal[-1][1]["error"] == "gateway stopped before it was sent"


async def test_log_sink_writes_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    await LogSink(SinkSettings(name="ops-log", type="log")).send(alert())
    line = json.loads(capsys.readouterr().err)
    assert line["logger"] == "phigate.alert" and line["alert"]["rule"] == "brute-force"


async def test_syslog_sink_sends_to_a_udp_collector() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector:
        collector.bind(("127.0.0.1", 0))
        collector.settimeout(5.0)
        port = collector.getsockname()[1]
        sink = SyslogSink(SinkSettings(name="siem", type="syslog",
                                       syslog_address=f"127.0.0.1:{port}", facility="auth"))
        try:
            await sink.send(alert())
        finally:
            sink.close()
        message = collector.recv(65536).decode()
    assert message.startswith("<36>phigate: ")  # auth (4) * 8 + warning (4)
    assert json.loads(message.split(": ", 1)[1].rstrip("\x00"))["id"] == "a1"
