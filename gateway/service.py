"""Assembling a running gateway from settings: journal, hooks, server, signals, shutdown.

``phigate serve`` and ``phigate demo`` both come through here, so what runs in
the demo is what runs in production. Start-up order: open the journal
(recovery; refuses on tampering), journal the loaded config, build the hook
chain, listen. Shutdown: drain sessions, then close the journal (final
checkpoint), so every session's last entries are in it.
"""

from __future__ import annotations

import logging

from .access.settings import DEFAULT_POLL_S, store_path
from .access.watcher import AccessWatcher, access_alert
from .alerts.hook import AlertHook
from .archive.errors import ArchiveError
from .archive.service import start_archiver
from .clock import TEST_NOW_ENV, Clock
from .drill.service import start_drills
from .errors import ConfigError, GatewayError
from .journal import Journal, JournalError
from .journal.hook import JournalHook, config_fields
from .masking.hook import MaskingHook
from .ops.monitoring import Monitoring
from .policy.hook import PolicyHook
from .proxy.auth import PasswordLogin
from .proxy.hooks import Hook
from .proxy.server import Gateway
from .proxy.sidequery import close_kept
from .recording import RecorderHook, RecordingServices
from .settings.config import Settings
from .signals import Signals
from .sso.authenticator import SsoLogin

log = logging.getLogger("phigate.service")

EXIT_JOURNAL = 3  # the journal could not be opened: tampered, locked or unwritable
EXIT_ARCHIVE = 4  # the archive cannot honour the configured lock mode, or is unreachable


def password_login(settings: Settings) -> PasswordLogin | None:
    """Logins for people who are not local identities: single sign-on when configured."""
    return SsoLogin(settings.sso) if settings.sso is not None else None


async def start_access(settings: Settings, journal: Journal, hooks: list[Hook]
                       ) -> AccessWatcher | None:
    """Just-in-time access, when a policy has requires_approval rules (or ``access:`` is
    configured): grants for the policy hook, access events for the journal and alerts."""
    policy = next(h for h in hooks if isinstance(h, PolicyHook))
    path = store_path(settings.access, settings.journal.dir if settings.journal else None)
    if path is None or not (policy.uses_approval or settings.access is not None):
        return None
    poll = settings.access.poll_interval_s if settings.access else DEFAULT_POLL_S
    alerts = next((h for h in hooks if isinstance(h, AlertHook)), None)
    watcher = AccessWatcher(path, journal, poll, on_request=access_alert(alerts))
    await watcher.start()
    policy.grants = watcher.grants_for
    return watcher


def build_hooks(settings: Settings, journal: Journal,
                monitoring: Monitoring | None = None) -> list[Hook]:
    """The interception chain, in the fixed order: decide (policy) → journal → record
    → metrics → alerts."""
    clock = Clock.from_environment()
    if clock.shifted:
        log.warning("clock shifted by %s for testing: policy time windows use %s",
                    TEST_NOW_ENV, clock.now().isoformat())
    policy = PolicyHook(settings, clock=clock)
    masking = MaskingHook(settings, policy)
    journal_hook = JournalHook(journal, policy.policies_in_force)
    others: list[Hook] = []
    if settings.recordings is not None:
        others.append(RecorderHook(settings.recordings, journal, source=str(settings.source)))
    if monitoring is None:
        return [policy, masking, journal_hook, *others]
    hooks = monitoring.chain(policy, journal_hook, journal, clock, others=others)
    hooks.insert(hooks.index(policy) + 1, masking)  # masking reads the decision
    return hooks


async def open_journal(settings: Settings) -> Journal:
    if settings.journal is None:
        raise ConfigError("a journal section is required: a gateway that does not record "
                          "is not PHIGate", file=str(settings.source), key="journal")
    for copy in settings.journal.checkpoint_copies:
        if not copy.is_dir():  # a missing witness mount must not go unnoticed
            raise ConfigError(f"checkpoint copy directory {copy} does not exist "
                              "(is the witness mounted?)", file=str(settings.source),
                              key="journal.checkpoint_copies")
    return await Journal.open(settings.journal)


async def run_gateway(settings: Settings) -> int:
    signals = Signals(settings.limits.shutdown_grace_s)
    try:
        return await _run(settings, signals)
    finally:
        signals.close()


async def _run(settings: Settings, signals: Signals) -> int:
    monitoring = Monitoring(settings)
    try:
        journal = await open_journal(settings)
    except (JournalError, GatewayError) as e:
        log.critical("journal cannot be opened: %s", e)
        await monitoring.journal_unusable(f"journal cannot be opened: {e}")
        return EXIT_JOURNAL
    archiver = None
    try:
        await journal.append("config_loaded", config_fields(settings))
        try:
            archiver = await start_archiver(settings, journal)
        except ArchiveError as e:
            log.critical("archive cannot be used, refusing to start: %s", e.message)
            await journal.append("archive_refused", {"reason": e.message})
            return EXIT_ARCHIVE
        hooks = build_hooks(settings, journal, monitoring)
        access = await start_access(settings, journal, hooks)
        try:
            async with RecordingServices(journal, hooks):
                gateway = Gateway(settings, hooks, password_login=password_login(settings))
                await gateway.start()
                await monitoring.start(gateway, journal, archiver)
                drills = await start_drills(settings, journal, monitoring, archiver)
                signals.gateway = gateway
                await signals.stop.wait()
                monitoring.draining()
                if drills is not None:
                    await drills.stop()
                await gateway.drain()
        finally:
            if access is not None:
                await access.stop()
    finally:
        await monitoring.stop()
        close_kept()  # the catalog reads' connections
        if archiver is not None:
            await archiver.close()
        await journal.close()
    return 0
