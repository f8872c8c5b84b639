"""A throwaway PostgreSQL server for the test suite and ``phigate demo``.

``TempCluster`` owns one private temporary directory holding a freshly initdb'd data directory, the
server's Unix socket and its log, plus the server process that ``pg_ctl`` starts there and the
generated superuser password. It never talks to a server it did not start: the port is probed free,
the socket lives in its own directory, and the caller's ``PG*`` environment is ignored. The test
suite's session fixture and the demo command drive it; everything here is blocking on purpose,
because it runs before and after the event loop that matters.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Literal, Self
from urllib.parse import quote

AuthMethod = Literal["scram-sha-256", "md5", "password", "trust"]

HOST = "127.0.0.1"
SUPERUSER = "postgres"
# The server refuses to run as root, so as root every server-side command runs as this OS account.
SERVER_OS_USER = "postgres"
BINDIR_ENV = "PHIGATE_PG_BINDIR"
FALLBACK_BINDIR = Path("/usr/lib/postgresql/15/bin")
# A probed port can be taken by someone else before the server binds it; a few retries absorb that.
PORT_ATTEMPTS = 5
START_TIMEOUT_S = 30
RELOAD_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 30
# Linux limits sun_path to 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
# Role names go into pg_hba.conf unquoted, so only plain identifiers are accepted.
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_PORT_TAKEN = ("Address already in use", "could not bind", "could not create any TCP/IP sockets")

_SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": f"'{HOST}'",
    # Durability is worthless for a throwaway cluster and costs seconds per test session.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    # The suite opens 200 concurrent sessions through the gateway, plus its own admin sessions.
    "max_connections": "300",
    "shared_buffers": "16MB",
    "password_encryption": "'scram-sha-256'",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
    "autovacuum": "off",
}


class ClusterError(Exception):
    """The temporary cluster could not be created, started, configured or queried."""


class PostgresNotFound(ClusterError):
    """The PostgreSQL server binaries are not installed where we look for them."""


def find_bindir() -> Path:
    """Locate initdb and pg_ctl: $PHIGATE_PG_BINDIR, else ``pg_config --bindir``, else PG 15's."""
    override = os.environ.get(BINDIR_ENV)
    candidates = [Path(override)] if override else [*_pg_config_bindir(), FALLBACK_BINDIR]
    for candidate in candidates:
        if all((candidate / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return candidate
    searched = ", ".join(str(c) for c in candidates)
    raise PostgresNotFound(f"PostgreSQL server binaries (initdb, pg_ctl) not found in {searched}")


def _pg_config_bindir() -> list[Path]:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return []
    try:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [Path(out.stdout.strip())] if out.returncode == 0 and out.stdout.strip() else []


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (PostgreSQL's quote_ident, always quoting)."""
    if "\x00" in name:
        raise ValueError("identifier contains a NUL byte")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """Quote an SQL string literal for a server with standard_conforming_strings on."""
    if "\x00" in value:
        raise ValueError("literal contains a NUL byte")
    return "'" + value.replace("'", "''") + "'"


def free_port() -> int:
    """A TCP port on the loopback that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _clean_env(**extra: str) -> dict[str, str]:
    # PGHOST, PGPORT, PGDATA, PGSERVICE... would point our tools at somebody else's server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(extra)
    return env


def _is_root() -> bool:
    return os.geteuid() == 0


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_OS_USER, "--", *cmd] if _is_root() else cmd


def _give_to_server_user(path: Path) -> None:
    if _is_root():
        shutil.chown(path, user=SERVER_OS_USER, group=None)


def _tail(path: Path, offset: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode("utf-8", "replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:])


def _teardown(pg_ctl: Path, data_dir: Path, root: Path) -> None:
    """Stop the server (if any) and delete its directory; shared by stop() and interpreter exit."""
    if (data_dir / "postmaster.pid").exists():
        cmd = _as_server_user([str(pg_ctl), "-D", str(data_dir), "-m", "immediate", "-w", "stop"])
        subprocess.run(cmd, capture_output=True, env=_clean_env(), cwd=root, timeout=60)
        if (data_dir / "postmaster.pid").exists():
            # Deleting the directory under a live server would leave an orphan nobody can stop.
            raise ClusterError(f"server in {data_dir} did not stop; leaving the directory in place")
    shutil.rmtree(root, ignore_errors=False)


class TempCluster:
    """A private PostgreSQL server on 127.0.0.1 with a generated superuser password."""

    def __init__(self, base_dir: Path | None = None, *, port: int | None = None) -> None:
        self._bindir = find_bindir()
        self._base_dir = Path(base_dir) if base_dir is not None else Path(tempfile.gettempdir())
        self._requested_port = port
        self._port: int | None = None
        self._root: Path | None = None
        self._password = secrets.token_urlsafe(24)
        self._role_hba: list[str] = []
        self._finalizer: weakref.finalize[[Path, Path, Path], TempCluster] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """initdb, configure and start the server; on failure clean up and raise ClusterError."""
        if self._root is not None:
            raise ClusterError("cluster already started")
        root = Path(tempfile.mkdtemp(prefix="phigate-pg-", dir=self._base_dir))
        self._root = root
        # Registered before anything can fail so that every exit path removes the directory.
        self._finalizer = weakref.finalize(
            self, _teardown, self._tool("pg_ctl"), self.data_dir, root)
        try:
            self._prepare_dirs()
            self._initdb()
            self._write_hba()
            self._start_server()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server immediately and remove its directory; safe to call more than once."""
        if self._finalizer is not None:
            self._finalizer()
        self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- properties --------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        if self._port is None:
            raise ClusterError("cluster is not running")
        return self._port

    @property
    def superuser(self) -> str:
        return SUPERUSER

    @property
    def superuser_password(self) -> str:
        return self._password

    @property
    def root(self) -> Path:
        if self._root is None:
            raise ClusterError("cluster has not been started")
        return self._root

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    @property
    def bindir(self) -> Path:
        return self._bindir

    def dsn(self, dbname: str = "postgres", user: str | None = None,
            password: str | None = None) -> str:
        """A libpq URI; without ``user`` it is the superuser's, password included."""
        if user is None:
            user, password = SUPERUSER, self._password
        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@{HOST}:{self.port}/{quote(dbname, safe='')}"

    # -- SQL ---------------------------------------------------------------------------------

    def execute(self, sql: str, *, dbname: str = "postgres", timeout: float = 120.0) -> str:
        """Run a psql script as superuser over TCP and return its unaligned, tuples-only stdout.

        The script is fed on stdin, so ``COPY … FROM STDIN`` blocks load inline.
        """
        cmd = [self._client_tool("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
               "-h", HOST, "-p", str(self.port), "-U", SUPERUSER, "-d", dbname, "-f", "-"]
        env = _clean_env(PGPASSWORD=self._password, PGSSLMODE="disable", PGCLIENTENCODING="UTF8",
                         PGCONNECT_TIMEOUT="10")
        try:
            proc = subprocess.run(cmd, input=sql.encode(), capture_output=True, env=env,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise ClusterError(f"psql timed out after {timeout}s on database {dbname}") from e
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()
            raise ClusterError(f"psql failed on database {dbname} (exit {proc.returncode}): {err}")
        return proc.stdout.decode("utf-8", "replace")

    def create_database(self, name: str, owner: str | None = None) -> None:
        owner_sql = f" OWNER {quote_ident(owner)}" if owner else ""
        self.execute(f"CREATE DATABASE {quote_ident(name)}{owner_sql};")

    def add_role(
        self, name: str, password: str | None, *, auth: AuthMethod = "scram-sha-256",
        superuser: bool = False, login: bool = True,
    ) -> None:
        """Create a role and make 127.0.0.1 (and ::1) authenticate it with ``auth``.

        For ``md5`` the password is stored as an md5 hash: with a SCRAM verifier the server would
        quietly upgrade an md5 pg_hba line to SCRAM and the md5 exchange would never be exercised.
        """
        if not _ROLE_NAME.fullmatch(name):
            raise ValueError(f"role name {name!r} must match {_ROLE_NAME.pattern}")
        if password is None and auth != "trust":
            raise ValueError(f"auth {auth} needs a password")
        self._role_hba += [f"host all {name} {HOST}/32 {auth}", f"host all {name} ::1/128 {auth}"]
        self._write_hba()
        self.execute(_create_role_sql(name, password, auth=auth, superuser=superuser, login=login))
        self.reload()

    def enable_tls(self, cert_pem: bytes, key_pem: bytes) -> None:
        """Serve TLS with this certificate (PEM) from now on; plaintext stays allowed."""
        cert, key = self.data_dir / "server.crt", self.data_dir / "server.key"
        self._write_owned(cert, cert_pem.decode("ascii"))
        self._write_owned(key, key_pem.decode("ascii"))
        key.chmod(0o600)  # the server refuses a key others can read
        with (self.data_dir / "phigate.conf").open("a") as conf:
            conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        self.reload()

    def reload(self) -> None:
        """Re-read postgresql.conf and pg_hba.conf, waiting until new sessions see the reload."""
        broken = self.execute("SELECT line_number || ': ' || error FROM pg_hba_file_rules"
                              " WHERE error IS NOT NULL;").strip()
        if broken:
            raise ClusterError(f"pg_hba.conf rejected: {broken}")
        before = self.execute("SELECT pg_conf_load_time(); SELECT pg_reload_conf();")
        before = before.splitlines()[0]
        # The postmaster handles SIGHUP asynchronously; a fresh session inherits its load time,
        # so a new value proves that connections from now on get the new pg_hba rules.
        deadline = time.monotonic() + RELOAD_TIMEOUT_S
        while self.execute("SELECT pg_conf_load_time();").strip() == before:
            if time.monotonic() > deadline:
                raise ClusterError(f"server did not reload its configuration:\n{self._log_tail()}")
            time.sleep(0.02)

    # -- internals ---------------------------------------------------------------------------

    def _tool(self, name: str) -> Path:
        return self._bindir / name

    def _client_tool(self, name: str) -> str:
        found = self._tool(name)
        if found.is_file():
            return str(found)
        on_path = shutil.which(name)
        if on_path is None:
            raise PostgresNotFound(f"{name} not found in {self._bindir} or on PATH")
        return on_path

    def _run_server_tool(self, cmd: list[str], what: str, timeout: float = 120) -> str:
        try:
            proc = subprocess.run(_as_server_user(cmd), capture_output=True, text=True,
                                  env=_clean_env(LC_ALL="C"), cwd=self.root, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ClusterError(f"{what} failed: {e}") from e
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).strip()
            raise ClusterError(f"{what} failed (exit {proc.returncode}): {output}")
        return proc.stdout

    def _prepare_dirs(self) -> None:
        sock = f"{self.socket_dir}/.s.PGSQL.65535"
        if len(sock.encode()) > MAX_SOCKET_PATH:
            raise ClusterError(f"socket path {sock} is too long; choose a shorter base_dir")
        self.socket_dir.mkdir()
        for path in (self.root, self.socket_dir):
            _give_to_server_user(path)
        if _is_root():
            self._check_server_user_can_write()

    def _check_server_user_can_write(self) -> None:
        # A base_dir under a root-only (0700) parent is the usual way to trip over this.
        probe = subprocess.run(_as_server_user(["test", "-w", str(self.root)]), env=_clean_env())
        if probe.returncode != 0:
            raise ClusterError(f"OS user {SERVER_OS_USER!r} cannot write {self.root}; "
                               "choose a base_dir whose parents it can search")

    def _initdb(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self._password + "\n")
        pwfile.chmod(0o600)
        _give_to_server_user(pwfile)
        try:
            self._run_server_tool(
                [str(self._tool("initdb")), "-D", str(self.data_dir), "-U", SUPERUSER,
                 "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C",
                 "--no-sync", "--no-instructions"], "initdb")
        finally:
            pwfile.unlink(missing_ok=True)
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude 'phigate.conf'\n")

    def _write_config(self, port: int) -> None:
        settings = {**_SERVER_SETTINGS, "port": str(port),
                    "unix_socket_directories": quote_literal(str(self.socket_dir))}
        text = "".join(f"{key} = {value}\n" for key, value in settings.items())
        self._write_owned(self.data_dir / "phigate.conf", text)

    def _write_hba(self) -> None:
        generic = [
            f"host all all {HOST}/32 scram-sha-256",
            "host all all ::1/128 scram-sha-256",
            "local all all scram-sha-256",
        ]
        # pg_hba.conf is first-match: per-role lines must precede the catch-all ones.
        lines = ["# Written by phigate TempCluster; per-role lines first.", *self._role_hba,
                 *generic]
        self._write_owned(self.data_dir / "pg_hba.conf", "\n".join(lines) + "\n")

    def _write_owned(self, path: Path, text: str) -> None:
        path.write_text(text)
        _give_to_server_user(path)

    def _start_server(self) -> None:
        attempts = 1 if self._requested_port is not None else PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self._requested_port or free_port()
            self._write_config(port)
            if self._try_start(port, last=attempt == attempts):
                self._port = port
                return

    def _try_start(self, port: int, *, last: bool) -> bool:
        """Start on ``port``; False if another process took the port and a retry may help."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        cmd = [str(self._tool("pg_ctl")), "-D", str(self.data_dir), "-l", str(self.log_path),
               "-w", "-t", str(START_TIMEOUT_S), "start"]
        try:
            self._run_server_tool(cmd, "pg_ctl start", timeout=START_TIMEOUT_S + 30)
        except ClusterError as e:
            tail = _tail(self.log_path, offset)
            if not last and any(marker in tail for marker in _PORT_TAKEN):
                return False
            raise ClusterError(f"PostgreSQL failed to start on port {port}: {e}\n"
                               f"--- tail of {self.log_path} ---\n{tail}") from e
        return True

    def _log_tail(self) -> str:
        return _tail(self.log_path)


def _create_role_sql(name: str, password: str | None, *, auth: AuthMethod, superuser: bool,
                     login: bool) -> str:
    options = ["LOGIN" if login else "NOLOGIN", "SUPERUSER" if superuser else "NOSUPERUSER"]
    if password is not None:
        options.append(f"PASSWORD {quote_literal(password)}")
    # SET (not SET LOCAL): psql runs each statement in its own transaction, the session persists.
    encryption = "md5" if auth == "md5" else "scram-sha-256"
    return (f"SET password_encryption = {quote_literal(encryption)};\n"
            f"CREATE ROLE {quote_ident(name)} {' '.join(options)};\n")
