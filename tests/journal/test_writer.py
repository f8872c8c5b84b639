"""The writer: ordering under concurrency, rotation and sealing, checkpoints and witnesses."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.errors import JournalWriteFailed
from gateway.journal import Journal, JournalSettings
from gateway.journal import segments as segment_io
from gateway.journal.checkpoints import Checkpoint, witness_name
from gateway.journal.reader import iter_entries
from gateway.journal.verify import verify_journal

from .conftest import read_lines, segment_files

Settings = Callable[..., JournalSettings]


async def test_many_concurrent_writers(tmp_path: Path, settings_for: Settings,
                                       public_key: Ed25519PublicKey) -> None:
    settings = settings_for(tmp_path / "j", segment_max_bytes=256 * 1024)
    journal = await Journal.open(settings)
    writers, per_writer = 64, 60

    async def writer(w: int) -> list[int]:
        seqs = []
        for i in range(per_writer):
            seqs.append(await journal.append("statement", {"session": f"s{w}", "n": i}))
            journal.append_later("outcome", {"session": f"s{w}", "n": i})
        return seqs

    results = await asyncio.gather(*(writer(w) for w in range(writers)))
    await journal.close()
    acknowledged = [s for seqs in results for s in seqs]
    assert len(set(acknowledged)) == writers * per_writer
    for seqs in results:
        assert seqs == sorted(seqs)
    entries = list(iter_entries(settings.dir))
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    by_seq = {e.seq: e.fields for e in entries}
    for w, seqs in enumerate(results):
        assert [by_seq[s]["n"] for s in seqs] == list(range(per_writer))
        assert all(by_seq[s]["session"] == f"s{w}" for s in seqs)
    outcomes = [e.fields for e in entries if e.fields["type"] == "outcome"]
    assert len(outcomes) == writers * per_writer
    # Each outcome comes after its statement.
    position = {(e.fields.get("session"), e.fields.get("n"), e.fields["type"]): e.seq
                for e in entries}
    assert all(position[(o["session"], o["n"], "statement")] < position[
        (o["session"], o["n"], "outcome")] for o in outcomes)
    report = verify_journal(settings.dir, public_key)
    assert report.ok, report.summary()


async def test_entry_format(tmp_path: Path, settings_for: Settings) -> None:
    settings = settings_for(tmp_path / "j")
    journal = await Journal.open(settings)
    seq = await journal.append("statement", {"sql": "SELECT 'é'", "z": 1, "a": [1, None]})
    await journal.close()
    lines = [raw for p in segment_files(settings.dir) for raw in read_lines(p)]
    line = next(raw for raw in lines if json.loads(raw)["seq"] == seq).rstrip(b"\n")
    entry = json.loads(line)
    assert list(entry) == sorted(entry)
    assert b" " not in line.replace(b"SELECT '\xc3\xa9'", b"")
    assert "SELECT 'é'".encode() in line
    assert len(entry["prev"]) == 64
    assert entry["type"] == "statement"
    assert entry["time"].endswith("Z") and len(entry["time"]) == len("2026-11-30T10:15:38.123456Z")


async def test_bad_fields_are_refused_without_spending_a_seq(
        tmp_path: Path, settings_for: Settings, public_key: Ed25519PublicKey) -> None:
    journal = await Journal.open(settings_for(tmp_path / "j"))
    try:
        with pytest.raises(ValueError):
            await journal.append("statement", {"seq": 5})
        with pytest.raises(TypeError):
            await journal.append("statement", {"raw": b"bytes are not JSON"})
        before = await journal.append("statement", {"sql": "SELECT 1"})
        after = await journal.append("statement", {"sql": "SELECT \udcff"})  # lone surrogate
        assert after == before + 1
    finally:
        await journal.close()
    assert verify_journal(tmp_path / "j", public_key).ok


async def test_entries_are_copied_unless_handed_over(tmp_path: Path,
                                                     settings_for: Settings) -> None:
    journal = await Journal.open(settings_for(tmp_path / "j"))
    try:
        lent = {"sql": "SELECT 1"}
        journal.append_later("outcome", lent)
        lent["sql"] = "changed after the append"  # a copy was queued: the entry keeps its text
        given = {"sql": "SELECT 2"}
        seq = await journal.append("statement", given, handed_over=True)
        with pytest.raises(ValueError):  # handed over or not, reserved keys are refused
            journal.append_later("outcome", {"prev": "0" * 64}, handed_over=True)
    finally:
        await journal.close()
    entries = {e.seq: e.fields for e in iter_entries(tmp_path / "j")}
    assert entries[seq - 1]["sql"] == "SELECT 1"
    assert entries[seq]["sql"] == "SELECT 2" and entries[seq]["seq"] == seq


async def test_appends_are_refused_once_the_writer_thread_ended(
        tmp_path: Path, settings_for: Settings) -> None:
    journal = await Journal.open(settings_for(tmp_path / "j"))
    writer = journal._writer
    writer._queue.put(None)  # what stop() tells the thread: it ends, the journal is still open
    await asyncio.to_thread(writer._thread.join)
    with pytest.raises(JournalWriteFailed):
        await journal.append("statement", {"sql": "SELECT 1"})
    await journal.close()


async def test_entries_nobody_waits_for_are_written_without_a_statement_behind(
        tmp_path: Path, settings_for: Settings) -> None:
    """Outcomes ride with the next awaited entry or go after RIDE_ALONG_S: also one queued
    while the timer armed for an earlier one (which rode along) has not fired yet."""
    journal = await Journal.open(settings_for(tmp_path / "j"))
    try:
        async def written(n: int) -> bool:
            for _ in range(200):  # up to 10 s on a loaded machine; the timer is 50 ms
                if journal.stats.entries >= n:
                    return True
                await asyncio.sleep(0.05)
            return False

        start = journal.stats.entries
        journal.append_later("outcome", {"n": 1})  # arms the ride-along timer
        await journal.append("statement", {"n": 2})  # takes the outcome along
        journal.append_later("outcome", {"n": 3})  # the timer is still armed
        assert await written(start + 3)
        journal.append_later("outcome", {"n": 4})  # after it fired: armed again
        assert await written(start + 4)
    finally:
        await journal.close()


async def test_statement_appends_are_timed_once_each_as_they_become_durable(
        tmp_path: Path, settings_for: Settings) -> None:
    journal = await Journal.open(settings_for(tmp_path / "j"))
    observed: list[float] = []
    journal.observe_appends(observed.append)
    try:
        await journal.append("statement", {"n": 1})
        deferred = journal.append_deferred("statement", {"n": 2})
        journal.append_later("outcome", {"n": 2})  # nobody waits: not a statement append
        await journal.append("session_start", {"session": "s"})  # awaited, not a statement
        await deferred
    finally:
        await journal.close()
    assert len(observed) == 2 and all(0 <= s < 60 for s in observed)


async def test_closed_journal_refuses(tmp_path: Path, settings_for: Settings) -> None:
    journal = await Journal.open(settings_for(tmp_path / "j"))
    await journal.close()
    assert not journal.writable
    with pytest.raises(JournalWriteFailed) as caught:
        await journal.append("statement", {"sql": "SELECT 1"})
    assert caught.value.sqlstate == "58030"


def test_digest_parameters(tmp_path: Path, settings_for: Settings) -> None:
    async def recorded(mode: str, key: bytes | None = None) -> list[str | None] | None:
        journal = await Journal.open(settings_for(tmp_path / mode, parameters=mode,
                                                  parameter_key=key))
        try:
            return journal.digest_parameters([b"123-45-6789", None, b"\xff\x00"])
        finally:
            await journal.close()

    assert asyncio.run(recorded("none")) is None
    assert asyncio.run(recorded("full")) == ["123-45-6789", None, "\\xff00"]
    key = b"k" * 32
    digests = asyncio.run(recorded("digest", key))
    assert digests is not None and digests[1] is None
    expected = hmac.new(key, b"phigate-journal-parameter-v1\x00123-45-6789",
                        hashlib.sha256).hexdigest()
    assert digests[0] == expected
    derived = asyncio.run(recorded("digest"))
    assert derived is not None and derived[0] != expected and len(str(derived[0])) == 64


async def test_rotation_seals_segments(tmp_path: Path, settings_for: Settings,
                                       public_key: Ed25519PublicKey) -> None:
    settings = settings_for(tmp_path / "j", segment_max_bytes=4096, immutable=True)
    journal = await Journal.open(settings)
    try:
        for i in range(60):
            await journal.append("statement", {"sql": f"SELECT {i}", "pad": "x" * 80})
    finally:
        await journal.close()
    files = segment_files(settings.dir)
    try:
        assert len(files) >= 3
        for sealed in files[:-1]:
            assert sealed.stat().st_mode & 0o777 == 0o444
            assert json.loads(read_lines(sealed)[-1])["type"] == "checkpoint"
        assert files[-1].stat().st_mode & 0o222, "the active segment is not sealed on close"
        immutable = [segment_io.is_immutable(f) for f in files[:-1]]
        # chattr +i needs CAP_LINUX_IMMUTABLE and a filesystem that supports it.
        if any(immutable):
            assert all(immutable)
            with pytest.raises(PermissionError):
                with open(files[0], "ab") as f:
                    f.write(b"x")
        assert verify_journal(settings.dir, public_key).ok
    finally:
        for f in files:
            segment_io.set_immutable(f, False)


async def test_seal_on_request(tmp_path: Path, settings_for: Settings,
                               public_key: Ed25519PublicKey) -> None:
    """What the audit drill asks for: the active segment sealed now, a checkpoint last."""
    settings = settings_for(tmp_path / "j")
    journal = await Journal.open(settings)
    try:
        seq = await journal.append("statement", {"sql": "SELECT 1"})
        await journal.seal_segment()
        after = await journal.append("statement", {"sql": "SELECT 2"})
        await journal.seal_segment()
    finally:
        await journal.close()
    first, second, active = segment_files(settings.dir)
    for sealed in (first, second):
        assert sealed.stat().st_mode & 0o777 == 0o444
        assert json.loads(read_lines(sealed)[-1])["type"] == "checkpoint"
    assert any(json.loads(line)["seq"] == seq for line in read_lines(first))
    assert any(json.loads(line)["seq"] == after for line in read_lines(second))
    assert active.stat().st_mode & 0o222
    assert verify_journal(settings.dir, public_key).ok


async def test_rotation_by_age(tmp_path: Path, settings_for: Settings) -> None:
    settings = settings_for(tmp_path / "j", segment_max_age_s=0.2)
    journal = await Journal.open(settings)
    try:
        await journal.append("statement", {"sql": "SELECT 1"})
        await asyncio.sleep(0.3)
        await journal.append("statement", {"sql": "SELECT 2"})
    finally:
        await journal.close()
    assert len(segment_files(settings.dir)) == 2


async def test_checkpoints_on_activity_and_heartbeats_when_idle(
        tmp_path: Path, settings_for: Settings) -> None:
    settings = settings_for(tmp_path / "j", checkpoint_interval_s=0.05,
                            heartbeat_interval_s=0.2)
    journal = await Journal.open(settings)
    try:
        await journal.append("statement", {"sql": "SELECT 1"})
        await asyncio.sleep(0.12)
        types = [e.fields["type"] for e in iter_entries(settings.dir)]
        assert types[-1] == "checkpoint", "a checkpoint follows new entries within the interval"
        count = types.count("checkpoint")
        await asyncio.sleep(0.5)
        idle = [e.fields["type"] for e in iter_entries(settings.dir)]
        assert 1 <= idle.count("checkpoint") - count <= 4, "heartbeats, not a checkpoint a tick"
    finally:
        await journal.close()


@pytest.fixture
def witness_url() -> Iterator[tuple[str, list[bytes]]]:
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="witness-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/checkpoints", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_checkpoints_reach_every_witness(tmp_path: Path, settings_for: Settings,
                                               witness_url: tuple[str, list[bytes]]) -> None:
    url, received = witness_url
    copies = (tmp_path / "w1", tmp_path / "w2")
    for copy in copies:
        copy.mkdir()
    settings = settings_for(tmp_path / "j", checkpoint_copies=copies, checkpoint_url=url)
    journal = await Journal.open(settings)
    await journal.append("statement", {"sql": "SELECT 1"})
    ident = journal.journal_id
    await journal.close()
    local = (settings.dir / "checkpoint.json").read_bytes()
    for copy in copies:
        assert (copy / witness_name(ident)).read_bytes() == local
    newest = Checkpoint.from_json(local)
    assert newest.seq == max(e.seq for e in iter_entries(settings.dir))
    assert received, "the URL witness got at least one checkpoint"
    assert all(Checkpoint.from_json(body).journal == ident for body in received)


async def test_an_unreachable_url_witness_does_not_block(tmp_path: Path,
                                                         settings_for: Settings) -> None:
    settings = settings_for(tmp_path / "j", checkpoint_url="http://127.0.0.1:9/nothing")
    journal = await Journal.open(settings)
    await journal.append("statement", {"sql": "SELECT 1"})
    await journal.close()
