"""``journal prune`` never removes a local segment whose archive copy is not confirmed.

Confirmed means: the version recorded when it was archived is still there (HEAD),
its SHA-256 matches the local file, and it is locked at least until the
recorded retain-until date. The archive is the one named in the journal
directory's ``archive-state.json`` (written by the gateway's uploader), so a
journal that was ever archived is guarded without further flags. Installed by
the archive's extension of ``phigate journal prune``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from ..journal.prune import PruneGuard
from ..journal.segments import SegmentFile
from . import s3
from .errors import ArchiveError
from .settings import S3Location, parse_s3_url
from .state import ArchivedObject, ArchiveState, file_sha256


def guard_for(directory: Path) -> PruneGuard | None:
    state = ArchiveState.load(directory)
    if state is None:
        return None
    location = parse_s3_url(state.url)
    client = s3.make_client(None, endpoint=state.endpoint, region=state.region)

    def confirm(segment: SegmentFile) -> str | None:
        recorded = state.objects.get(location.key(f"segments/{segment.name}"))
        if recorded is None:
            return f"not archived to {location} yet"
        return confirm_copy(client, location, recorded, segment.path)

    return confirm


def confirm_copy(client: Any, location: S3Location, recorded: ArchivedObject, local: Path
                 ) -> str | None:
    """None if the recorded version is there, equal to ``local``, locked as recorded;
    else what is wrong. Blocking (a HEAD); also used by the audit drill."""
    key = recorded.key
    try:
        info = s3.head(client, location.bucket, key, recorded.version_id)
    except ArchiveError as e:
        return f"its archive copy cannot be confirmed: {e.message}"
    if info is None:
        return f"its archive copy {key} (version {recorded.version_id}) is gone"
    if info.sha256 != file_sha256(local) or info.sha256 != recorded.sha256:
        return f"its archive copy {key} differs from the local segment"
    until = info.retain_until.astimezone(dt.UTC).isoformat() if info.retain_until else ""
    if info.mode is None or until[:19] < recorded.retain_until[:19]:
        return f"its archive copy {key} is no longer locked until {recorded.retain_until}"
    return None

