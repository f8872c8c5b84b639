"""Journaling every look at PHI by an auditor (``audit_access``), even while the gateway runs.

The running gateway holds the journal's lock, so a CLI cannot append to it.
Instead the CLI drops a request file, atomically, into ``<journal>/spool/``;
the gateway's :class:`SpoolDrainer` appends each one as an ``audit_access``
entry (durably) and only then deletes it, and the CLI waits for that before
showing anything. With no gateway running the CLI opens the journal and
appends itself; failing that (no access to the signing key) the request stays
in the spool, durable, and is journaled when the gateway next starts. When
none of this works the CLI refuses to show PHI. :func:`record_access` is the
CLI side; the drainer runs inside ``phigate serve`` (see ``runtime``).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..journal import Journal, JournalError, JournalSettings, KeyFileError
from ..journal.segments import DirectoryLock, fsync_dir
from ..secretfile import write_new_secret
from .errors import RecordingError

log = logging.getLogger("phigate.recording")

SPOOL_DIR = "spool"
SPOOL_MODE = 0o1733  # auditors may drop requests; only the gateway lists and removes them
POLL_S = 0.2  # how often the gateway looks for requests
ACK_TIMEOUT_S = 10.0  # how long the CLI waits for the running gateway to journal its request
MAX_REQUEST_BYTES = 16 * 1024
# Fields a request may carry into the journal, and their types.
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "action": str, "session": str, "os_user": str, "as": str, "host": str, "pid": int,
    "requested_at": str, "filters": dict, "sign_in": dict}


class AccessNotRecorded(RecordingError):
    """The access could not be journaled, so nothing is shown."""


def spool_dir(journal_dir: Path) -> Path:
    return journal_dir / SPOOL_DIR


def access_fields(action: str, *, session: str | None = None, acting_as: str | None = None,
                  filters: dict[str, Any] | None = None,
                  sign_in: dict[str, str] | None = None) -> dict[str, Any]:
    """Who (OS user and ``--as``), what, from where and when (and, for the console's
    sign-ins, how: ``sign_in`` names the method, the issuer, a refusal's reason)."""
    fields: dict[str, Any] = {
        "action": action, "os_user": _os_user(), "host": socket.gethostname(),
        "pid": os.getpid(),
        "requested_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if session is not None:
        fields["session"] = session
    if acting_as:
        fields["as"] = acting_as
    if filters:
        fields["filters"] = {k: v for k, v in filters.items() if v not in (None, False)}
    if sign_in:
        fields["sign_in"] = sign_in
    return fields


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


# ---------------------------------------------------------------- the CLI side


def record_access(journal: JournalSettings, fields: dict[str, Any]) -> str:
    """Journal the access (or spool it durably); returns how. Raises AccessNotRecorded."""
    if not journal.dir.is_dir():
        raise AccessNotRecorded(f"no journal at {journal.dir}")
    if not gateway_running(journal.dir):
        try:
            seq = asyncio.run(_append_directly(journal, fields))
            return f"journaled as entry {seq}"
        except (JournalError, KeyFileError, OSError) as e:
            log.info("cannot append to the journal directly (%s); using the spool", e)
    return spool_and_wait(journal.dir, fields)


def spool_and_wait(journal_dir: Path, fields: dict[str, Any]) -> str:
    """Hand the access to the gateway that holds the journal; wait until it is journaled."""
    try:
        request = write_request(spool_dir(journal_dir), fields)
    except OSError as e:
        raise AccessNotRecorded(f"cannot journal this access: the journal is busy or not "
                                f"writable and the spool refused the request ({e.strerror})"
                                ) from e
    if not gateway_running(journal_dir):
        return "spooled; journaled when the gateway next starts"
    deadline = time.monotonic() + ACK_TIMEOUT_S
    while time.monotonic() < deadline:
        if not request.exists():
            return "journaled by the running gateway"
        time.sleep(0.05)
    request.unlink(missing_ok=True)
    raise AccessNotRecorded(f"the running gateway did not journal this access within "
                            f"{ACK_TIMEOUT_S:.0f} s; nothing shown")


def gateway_running(journal_dir: Path) -> bool:
    lock = DirectoryLock(journal_dir)
    try:
        if lock.acquire():
            lock.release()
            return False
    except OSError:
        pass  # cannot even open the lock file: assume a gateway (wait for its answer)
    return True


async def _append_directly(settings: JournalSettings, fields: dict[str, Any]) -> int:
    journal = await Journal.open(settings, program=f"phigate {fields['action']}")
    try:
        return await journal.append("audit_access", {**fields, "via": "direct"})
    finally:
        await journal.close()


def write_request(directory: Path, fields: dict[str, Any]) -> Path:
    """Atomically create a request file (temporary name, fsync, rename, fsync directory)."""
    if not directory.is_dir():
        make_spool(directory)
    name = f"{time.time_ns()}-{os.getpid()}-{secrets.token_hex(4)}.json"
    temporary, final = directory / f".{name}.tmp", directory / name
    data = json.dumps(fields, sort_keys=True).encode("utf-8")
    write_new_secret(temporary, data)
    os.replace(temporary, final)
    fsync_dir(directory)
    return final


def make_spool(directory: Path) -> None:
    directory.mkdir(exist_ok=True)
    os.chmod(directory, SPOOL_MODE)  # mkdir's mode is filtered by the umask


# ---------------------------------------------------------------- the gateway side


@dataclass(frozen=True, slots=True)
class _Request:
    path: Path
    fields: dict[str, Any] | None
    problem: str | None = None


class SpoolDrainer:
    """Turns spooled requests into ``audit_access`` entries; drains at start-up, then polls."""

    def __init__(self, journal: Journal, directory: Path) -> None:
        self._journal = journal
        self._dir = directory
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        await asyncio.to_thread(make_spool, self._dir)
        await self.drain()
        self._task = asyncio.create_task(self._run(), name="phigate-audit-spool")

    async def stop(self) -> None:
        if self._task is not None:
            # Asked, not cancelled: a request being journaled is finished and removed, so it
            # cannot be journaled twice.
            self._stop.set()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.drain()
        except (JournalError, OSError) as e:
            log.error("audit spool: requests left for the next start: %s", e)

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                async with asyncio.timeout(POLL_S):
                    await self._stop.wait()
                return
            except TimeoutError:
                pass
            try:
                await self.drain()
            except (JournalError, OSError) as e:  # e.g. journal full: retried next time
                log.error("audit spool: %s", e)
            except Exception:
                log.exception("audit spool failed")

    async def drain(self) -> int:
        """Journal every waiting request, each durably before its file is removed."""
        requests = await asyncio.to_thread(_read_requests, self._dir)
        for request in requests:
            fields: dict[str, Any] = {"via": "spool", "request": request.path.name}
            if request.fields is None:
                fields["rejected"] = request.problem
                log.error("audit spool: rejected %s: %s", request.path.name, request.problem)
            else:
                fields.update(request.fields)
            await self._journal.append("audit_access", fields)
            await asyncio.to_thread(_remove, request)
        return len(requests)


def _read_requests(directory: Path) -> list[_Request]:
    try:
        names = sorted(e.name for e in os.scandir(directory)
                       if e.name.endswith(".json") and e.is_file(follow_symlinks=False))
    except FileNotFoundError:
        return []
    return [_read_request(directory / name) for name in names]


def _read_request(path: Path) -> _Request:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_REQUEST_BYTES + 1)
        if len(data) > MAX_REQUEST_BYTES:
            return _Request(path, None, "too large")
        fields = json.loads(data)
    except (OSError, ValueError) as e:
        return _Request(path, None, f"unreadable: {e}")
    if not isinstance(fields, dict):
        return _Request(path, None, "not a JSON object")
    unknown = sorted(set(fields) - set(_FIELDS))
    if unknown or "action" not in fields:
        return _Request(path, None, f"unexpected fields {unknown}" if unknown else "no action")
    for key, value in fields.items():
        if not isinstance(value, _FIELDS[key]) or isinstance(value, bool):
            return _Request(path, None, f"field {key!r} has the wrong type")
    return _Request(path, fields)


def _remove(request: _Request) -> None:
    if request.fields is None:  # kept for whoever investigates, out of the way
        os.replace(request.path, request.path.with_suffix(".rejected"))
    else:
        request.path.unlink(missing_ok=True)
