"""Signed checkpoints and the witnesses that hold copies of them.

A checkpoint is a journal line signed with the journal's Ed25519 key: it names
the seq it covers and that line's chain hash, so an auditor holding only the
public key can tell the journal up to there is what the gateway wrote. The
newest checkpoint is also written to ``checkpoint.json`` in the journal
directory (which catches truncation), to every ``checkpoint_copies`` directory
and, optionally, POSTed to a URL (which catch a rollback of the whole
directory). The writer signs; :class:`Publisher`, driven by the journal, does
the copying off the event loop, best effort and logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import segments
from .canonical import encode_compact
from .chain import checkpoint_message

log = logging.getLogger("phigate.journal")

# A witness that does not answer within this is skipped; the next checkpoint
# carries newer state anyway, and the journal must never wait on the network.
URL_TIMEOUT_S = 5.0
_SIG_HEX_LEN = 128


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One signed checkpoint; ``seq`` is the checkpoint line's own seq, ``covers`` = seq - 1."""

    journal: str
    seq: int
    covers: int
    head: str
    time: str
    sig: str

    def message(self) -> bytes:
        return checkpoint_message(journal=self.journal, seq=self.seq, covers=self.covers,
                                  head=self.head, time=self.time)

    def is_signed_by(self, key: Ed25519PublicKey) -> bool:
        # Require canonical lowercase hex: bytes.fromhex accepts other spellings
        # of the same bytes, which would let a byte of the line change unnoticed.
        if len(self.sig) != _SIG_HEX_LEN or self.sig != self.sig.lower():
            return False
        try:
            key.verify(bytes.fromhex(self.sig), self.message())
        except (ValueError, InvalidSignature):
            return False
        return True

    def line_fields(self) -> dict[str, object]:
        """The fields of the checkpoint's journal line, besides seq/time/type/prev."""
        return {"covers": self.covers, "head": self.head, "journal": self.journal,
                "sig": self.sig}

    def to_json(self) -> bytes:
        return encode_compact(asdict(self)).encode() + b"\n"

    @classmethod
    def from_mapping(cls, obj: object) -> Checkpoint:
        """From a journal line or a checkpoint file; ValueError if it is not well-formed."""
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        try:
            cp = cls(journal=obj["journal"], seq=obj["seq"], covers=obj["covers"],
                     head=obj["head"], time=obj["time"], sig=obj["sig"])
        except KeyError as e:
            raise ValueError(f"missing {e.args[0]!r}") from e
        for name in ("journal", "head", "time", "sig"):
            if type(getattr(cp, name)) is not str:
                raise ValueError(f"{name!r} is not a string")
        for name in ("seq", "covers"):
            if type(getattr(cp, name)) is not int:
                raise ValueError(f"{name!r} is not an integer")
        return cp

    @classmethod
    def from_json(cls, data: bytes) -> Checkpoint:
        """Parse a checkpoint file; it must be byte-for-byte what :meth:`to_json` writes."""
        try:
            obj = json.loads(data)
        except ValueError as e:
            raise ValueError(f"not valid JSON: {e}") from e
        cp = cls.from_mapping(obj)
        if cp.to_json() != data:
            raise ValueError("not in canonical form: the file was edited")
        return cp


def sign(key: Ed25519PrivateKey, *, journal: str, seq: int, head: str, time: str) -> Checkpoint:
    """Sign a checkpoint at ``seq`` covering line ``seq - 1`` whose chain hash is ``head``."""
    unsigned = Checkpoint(journal=journal, seq=seq, covers=seq - 1, head=head, time=time, sig="")
    return Checkpoint(journal=journal, seq=seq, covers=seq - 1, head=head, time=time,
                      sig=key.sign(unsigned.message()).hex())


def witness_name(journal_id: str) -> str:
    """A journal's file in a shared witness directory (one directory may serve many gateways)."""
    return f"{journal_id}.checkpoint.json"


def read_checkpoint_file(path: Path) -> Checkpoint | None:
    """The checkpoint stored at ``path``; None if absent; ValueError if damaged."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return Checkpoint.from_json(data)


class Publisher:
    """Copies the newest checkpoint to its witnesses, coalescing bursts.

    Runs the blocking file writes on its own thread so a slow or hung witness
    mount never delays journal commits; only the newest checkpoint matters, so
    one submitted while a copy is in flight simply replaces the pending one.
    """

    def __init__(self, journal_dir: Path, copies: tuple[Path, ...], url: str | None) -> None:
        self._dir = journal_dir
        self._copies = copies
        self._url = url
        self._executor = ThreadPoolExecutor(max_workers=1,
                                            thread_name_prefix="phigate-journal-witness")
        self._pending: Checkpoint | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._post_task: asyncio.Task[None] | None = None
        self._health = _WitnessHealth()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="phigate-journal-witness")

    def submit(self, cp: Checkpoint) -> None:
        self._pending = cp
        self._idle.clear()
        self._wake.set()

    async def flush(self) -> None:
        """Wait until the newest submitted checkpoint is written (or has failed, logged)."""
        await self._idle.wait()

    async def close(self) -> None:
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._post_task is not None:
            await asyncio.gather(self._post_task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            cp, self._pending = self._pending, None
            if cp is not None:
                await loop.run_in_executor(self._executor, self._write_files, cp)
                self._post(cp)
            if self._pending is None:
                self._idle.set()

    def _write_files(self, cp: Checkpoint) -> None:
        data = cp.to_json()
        targets = [self._dir / segments.CHECKPOINT_FILE]
        targets += [copy / witness_name(cp.journal) for copy in self._copies]
        for target in targets:
            try:
                segments.atomic_write(target, data)
            except OSError as e:
                self._health.failed(str(target), cp, e)
            else:
                self._health.succeeded(str(target), cp)

    def _post(self, cp: Checkpoint) -> None:
        if self._url is None or (self._post_task is not None and not self._post_task.done()):
            return
        self._post_task = asyncio.create_task(asyncio.to_thread(self._post_now, self._url, cp),
                                              name="phigate-journal-witness-post")

    def _post_now(self, url: str, cp: Checkpoint) -> None:
        request = urllib.request.Request(url, data=cp.to_json(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=URL_TIMEOUT_S) as response:
                response.read()
        except (urllib.error.URLError, OSError, ValueError) as e:
            self._health.failed(url, cp, e)
        else:
            self._health.succeeded(url, cp)


class _WitnessHealth:
    """Logs a witness going bad and coming back, not every checkpoint in between.

    Checkpoints come every second; an unreachable witness would otherwise flood
    the log and hide everything else. Called from the witness threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failing: dict[str, int] = {}

    def failed(self, target: str, cp: Checkpoint, error: Exception) -> None:
        with self._lock:
            first = target not in self._failing
            self._failing[target] = self._failing.get(target, 0) + 1
        if first:
            log.error("journal checkpoint witness %s failed at seq %d: %s (logged again when "
                      "it recovers)", target, cp.seq, error)

    def succeeded(self, target: str, cp: Checkpoint) -> None:
        with self._lock:
            missed = self._failing.pop(target, 0)
        if missed:
            log.warning("journal checkpoint witness %s recovered at seq %d after %d failures",
                        target, cp.seq, missed)
