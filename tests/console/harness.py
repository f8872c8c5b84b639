"""Running ``phigate console -c CONFIG`` as a real subprocess, and a small HTTP client for it.

The client keeps cookies like a browser (per name, path ignored), never follows redirects
(the tests look at them), and can speak HTTPS to a console with a self-signed certificate.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path

from tests.e2e.harness import PHIGATE, REPO

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


class ConsoleProcess:
    """The installed console script in a subprocess, logging to a file."""

    def __init__(self, config: Path, port: int, log: Path, *, tls: bool = False) -> None:
        self.config, self.port, self.log_path, self.tls = config, port, log, tls
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ConsoleProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([str(PHIGATE), "console", "-c", str(self.config)],
                                            cwd=REPO, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"console exited {self.process.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"console did not start listening:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.terminate()
        try:
            return self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    set_cookies: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def location(self) -> str | None:
        return self.headers.get("Location")

    def csrf(self) -> str:
        found = CSRF_FIELD.search(self.text)
        assert found, f"no csrf_token field in:\n{self.text[:2000]}"
        return found.group(1)


class Client:
    """One browser's worth of cookies against one console."""

    def __init__(self, console: ConsoleProcess) -> None:
        self.console = console
        self.cookies: dict[str, str] = {}

    def _connection(self) -> http.client.HTTPConnection:
        if self.console.tls:
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            return http.client.HTTPSConnection("127.0.0.1", self.console.port, timeout=30,
                                               context=context)
        return http.client.HTTPConnection("127.0.0.1", self.console.port, timeout=30)

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> Answer:
        connection = self._connection()
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            answer = Answer(response.status, response.headers, response.read(),
                            response.headers.get_all("Set-Cookie") or [])
        finally:
            connection.close()
        for line in answer.set_cookies:
            for name, morsel in SimpleCookie(line).items():
                if morsel.value and morsel["max-age"] != "0":
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        return answer

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post(self, path: str, form: dict[str, str] | None = None,
             headers: dict[str, str] | None = None) -> Answer:
        return self.request("POST", path, form or {}, headers)

    def login(self, username: str, password: str) -> Answer:
        token = self.get("/login").csrf()
        return self.post("/login", {"username": username, "password": password,
                                    "csrf_token": token})
