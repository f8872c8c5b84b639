"""Starting the archive with the gateway: the bucket check, then the uploader.

``gateway/service.py`` calls :func:`start_archiver` after the journal is open
and before the gateway listens; a bucket that cannot honour the configured
lock mode refuses the start (:class:`ArchiveUnusable`), so a gateway never runs
believing its evidence is locked when it is not.
"""

from __future__ import annotations

import logging

from ..journal import Journal
from ..recording.errors import RecordingError
from ..recording.keys import MasterKey, load_master_key
from ..settings.config import Settings
from .uploader import Archiver

log = logging.getLogger("phigate.archive")


async def start_archiver(settings: Settings, journal: Journal) -> Archiver | None:
    if settings.archive is None:
        return None
    recordings = settings.recordings
    key: MasterKey | None = None
    if recordings is not None:
        try:
            key = load_master_key(recordings)
        except RecordingError as e:  # the recorder reports this itself
            log.error("archive: recordings will not be archived: %s", e)
    archiver = Archiver(settings.archive, journal,
                        recordings=recordings.dir if recordings else None, recording_key=key)
    await archiver.start()
    log.info("archiving to %s (%s, retain %.0f days)", settings.archive.location,
             settings.archive.mode, settings.archive.retain_days)
    return archiver
