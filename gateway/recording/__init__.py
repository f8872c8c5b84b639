"""Encrypted, journal-bound session recordings and the auditor's replay.

Module map: ``errors`` and ``keys`` (the master key file) → ``format`` (the
authenticated chunked container) → ``values`` and ``events`` (what a chunk
holds, encoded on the gateway, decoded for replay) → ``writer`` (per-session
sealing and the disk thread) → ``hook`` (the relay's view) and ``runtime``
(what ``run_gateway`` starts and stops). Auditor side: ``binding`` (what the
journal says about each recording), ``reader``, ``table`` and ``replay`` (the
psql-like transcript), ``sessions`` (``phigate sessions list``), ``spool``
(journaling every access), ``cli``.
"""

from .errors import RecordingFailed, RecordingUnavailable
from .hook import RecorderHook
from .runtime import RecordingServices

__all__ = ["RecorderHook", "RecordingFailed", "RecordingServices", "RecordingUnavailable"]
