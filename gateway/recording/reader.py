"""Reading a recording file: header, data key, then authenticated chunks as they appear.

:class:`RecordingReader` reads whatever the file holds now (``poll``) and
returns the events of every complete chunk, so the same code serves a
finished recording and ``replay --follow`` on a live one. Anything that fails
authentication raises :class:`RecordingTampered` with its position; events
before it have already been returned. Driven by ``replay``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import RecordingError, RecordingMissing, RecordingTampered
from .events import Event, EventDecoder
from .format import FileHeader, Opener, parse_header, unwrap_data_key
from .keys import MasterKey

READ_BLOCK = 1024 * 1024


class RecordingReader:
    def __init__(self, path: Path, key: MasterKey) -> None:
        self.path = path
        self._key = key
        try:
            self._file: BinaryIO = open(path, "rb")  # closed by close()
        except FileNotFoundError as e:
            raise RecordingMissing(f"recording {path} does not exist") from e
        except OSError as e:
            raise RecordingError(f"cannot read recording {path}: {e.strerror}") from e
        self._buf = bytearray()
        self._base = 0  # file offset of _buf[0]
        self.header: FileHeader | None = None
        self._opener: Opener | None = None
        self._decoder = EventDecoder()
        self.chunks = 0

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def complete(self) -> bool:
        """The final chunk (the session's end) has been read."""
        return self._opener is not None and self._opener.final_seen

    @property
    def pending_bytes(self) -> int:
        """Bytes after the last complete chunk: a chunk being written, or a torn one."""
        return len(self._buf)

    @property
    def position(self) -> int:
        return self._base

    def open(self) -> FileHeader:
        """Read the header and unwrap the data key: a wrong key fails here, before any output.

        RecordingKeyError for the wrong key, RecordingTampered for a damaged header."""
        while self.header is None:
            block = self._file.read(READ_BLOCK)
            if not block:
                raise RecordingTampered(f"recording {self.path} has no complete header "
                                        "(truncated)", offset=0)
            self._buf += block
            self._start()
        return self.header

    def poll(self) -> Iterator[Event]:
        """Events of every chunk complete in the file now; call again for what comes later."""
        while True:
            yield from self._chunks()
            block = self._file.read(READ_BLOCK)
            if not block:
                if self.complete and self._buf:
                    raise RecordingTampered(f"{len(self._buf)} bytes after the final chunk, "
                                            f"at byte {self._base}", offset=self._base)
                return
            self._buf += block

    def _chunks(self) -> Iterator[Event]:
        if self._opener is None and not self._start():
            return
        assert self._opener is not None
        offset = 0
        try:
            while not self._opener.final_seen:
                chunk = self._opener.next_chunk(self._buf, offset, base=self._base)
                if chunk is None:
                    break
                offset += chunk.end - chunk.start
                self.chunks += 1
                yield from self._decoder.decode(chunk.plaintext)
        finally:
            del self._buf[:offset]  # once per block read, not per chunk
            self._base += offset

    def _start(self) -> bool:
        header = parse_header(self._buf)
        if header is None:
            return False
        data_key = unwrap_data_key(header, self._key)
        self.header = header
        self._opener = Opener(header, data_key)
        del self._buf[:len(header.raw)]
        self._base = len(header.raw)
        return True
