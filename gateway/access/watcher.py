"""The gateway's view of access grants, and the journal's record of every access event.

Started by ``gateway/service.py`` when access requests are in use. Every ``poll_s`` it
(in a thread, since SQLite is blocking) records expiries that fell due, reads the store's
new events and the active grants; on the event loop it then journals each event in order
(``access_request``, ``access_approval``, ``access_grant``, ``access_denial``,
``access_revocation``, ``access_expiry``), remembers the last journaled one in the store,
and tells ``on_request`` about new requests (the alert sinks). ``grants_for`` is what the
policy hook asks for every statement: a dictionary lookup, with each grant's expiry
checked against the clock there, so an expiry takes effect at its second and a revocation
within one poll, for running sessions too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from ..alerts.hook import AlertHook
from ..alerts.model import Event, EventKind
from .store import AccessStore, Request, StoredEvent

log = logging.getLogger("phigate.access")

_NONE: Mapping[str, str] = MappingProxyType({})
_KINDS = {"request": "access_request", "approval": "access_approval", "grant": "access_grant",
          "denial": "access_denial", "revocation": "access_revocation",
          "expiry": "access_expiry"}


class JournalAppender(Protocol):
    async def append(self, type: str, fields: dict[str, object]) -> int: ...


class AccessWatcher:
    def __init__(self, store_path: Path, journal: JournalAppender, poll_s: float,
                 on_request: Callable[[StoredEvent], None] = lambda event: None) -> None:
        self.store = AccessStore(store_path)
        self._journal = journal
        self.poll_s = poll_s
        self._on_request = on_request
        self._meta_key = f"journaled_seq:{journal_identity(journal)}"
        # identity -> rule -> (grant id, expires_at), swapped whole on each poll
        self._grants: dict[str, dict[str, tuple[str, float]]] = {}
        self._task: asyncio.Task[None] | None = None

    def grants_for(self, identity: str) -> Mapping[str, str]:
        """rule name -> grant id for the grants ``identity`` holds right now."""
        held = self._grants.get(identity)
        if not held:
            return _NONE
        now = time.time()
        return {rule: grant for rule, (grant, expires) in held.items() if expires > now}

    async def start(self) -> None:
        await self.poll()  # grants are known before the first client is accepted
        self._task = asyncio.create_task(self._run(), name="access-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.poll()  # journal what happened up to the end
        self.store.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.poll()
            except Exception:  # the store is best effort for the loop; grants stay as they were
                log.exception("access store poll failed")

    async def poll(self) -> None:
        events, grants = await asyncio.to_thread(self._read)
        self._grants = _by_identity(grants)
        for event in events:
            await self._journal.append(_KINDS.get(event.kind, f"access_{event.kind}"), {
                "request": event.request_id, "actor": event.actor, **event.fields})
            await asyncio.to_thread(self.store.set_meta, self._meta_key, str(event.seq))
            if event.kind == "request":
                self._on_request(event)

    def _read(self) -> tuple[list[StoredEvent], list[Request]]:
        now = time.time()
        self.store.expire_due(now)
        seq = int(self.store.meta(self._meta_key, "0"))
        return self.store.events_after(seq), self.store.active_grants(now)


def journal_identity(journal: object) -> str:
    """Which journal has recorded how far: several gateways may share one store."""
    settings = getattr(journal, "settings", None)
    return str(getattr(settings, "dir", "journal"))


def _by_identity(grants: list[Request]) -> dict[str, dict[str, tuple[str, float]]]:
    out: dict[str, dict[str, tuple[str, float]]] = {}
    for grant in grants:
        assert grant.expires_at is not None
        out.setdefault(grant.requester, {})[grant.rule] = (grant.id, grant.expires_at)
    return out


def access_alert(alerts: AlertHook | None) -> Callable[[StoredEvent], None]:
    """New requests go to the alert rules (``when: access_request``) and so to the sinks."""
    if alerts is None:
        return lambda event: None

    def alert(event: StoredEvent) -> None:
        fields = event.fields
        alerts.observe(Event(EventKind.ACCESS_REQUESTED, identity=event.actor, details={
            "request": event.request_id, "rule": fields.get("rule"),
            "reason": fields.get("reason"),
            "duration": human_duration(float(str(fields.get("duration_s", 0))))}))
    return alert


def human_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"
