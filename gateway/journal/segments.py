"""Segment files on disk: names, creation, preallocation, writes, sealing.

A journal directory holds ``segment-<first seq, 20 digits>.jsonl`` files, so
name order is chain order and a file's name says which seq it must start
with. The active segment is preallocated with zeros ahead of its data, so an
fdatasync after a write need not update the file's size (one I/O instead of
two); everything that reads a segment treats the zero-filled tail as the end
of data (JSON text never holds a NUL byte), and sealing or closing trims it.
The writer drives creation, writes and sealing; recovery, the verifier and the
reader use the listing and line helpers. All functions here block: the writer
calls them from its thread.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_NAME = re.compile(r"segment-(\d{20})\.jsonl")
CHECKPOINT_FILE = "checkpoint.json"
LOCK_FILE = ".lock"
SEALED_MODE = 0o444
ACTIVE_MODE = 0o600

# Linux FS_IOC_GETFLAGS / FS_IOC_SETFLAGS and FS_IMMUTABLE_FL (linux/fs.h); the
# kernel reads and writes an int despite the macro's long.
_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_IMMUTABLE_FL = 0x00000010
# How far back to look for the start of a last line before reading further.
_TAIL_CHUNK = 64 * 1024
# Zeros written ahead of the data at a time: one size-changing fdatasync per this many
# bytes of entries (thousands of them) instead of one per batch.
PREALLOCATE_STEP = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SegmentFile:
    path: Path
    first_seq: int

    @property
    def name(self) -> str:
        return self.path.name


def segment_name(first_seq: int) -> str:
    return f"segment-{first_seq:020d}.jsonl"


def list_segments(directory: Path) -> list[SegmentFile]:
    """The directory's segments in chain order; other files are ignored."""
    found = []
    for entry in os.scandir(directory):
        match = _NAME.fullmatch(entry.name)
        if match and entry.is_file(follow_symlinks=False):
            found.append(SegmentFile(Path(entry.path), int(match.group(1))))
    found.sort(key=lambda s: s.first_seq)
    return found


def is_sealed(path: Path) -> bool:
    return os.stat(path).st_mode & 0o222 == 0


def fsync_dir(directory: Path) -> None:
    """Make a file's creation, rename or removal in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_segment(directory: Path, first_seq: int) -> Path:
    """Create an empty segment; its directory entry is durable on return."""
    path = directory / segment_name(first_seq)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, ACTIVE_MODE)
    os.close(fd)
    fsync_dir(directory)
    return path


def open_segment(path: Path) -> tuple[int, int, int]:
    """(descriptor for positioned writes, end of data, file size) of an active segment."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        with open(path, "rb") as f:
            end = _data_end(f, size)
    except BaseException:
        os.close(fd)
        raise
    return fd, end, size


def write_at(fd: int, data: bytes, offset: int, allocated: int, step: int, *,
             sync: bool = False, ahead: int = 0) -> int:
    """Write ``data`` at ``offset``, first extending the zero-filled preallocation if needed:
    so that at least ``ahead`` zero bytes follow the data.

    Returns the new allocated size. Preallocation is best effort: where the disk (or a
    file size limit) has no room for a whole step, the data alone is written, and its
    own errno (ENOSPC, EFBIG) reaches the writer. With ``sync`` the data is durable on
    return (see :func:`pwrite_all`); the zeros ahead of it need not be.
    """
    end = offset + len(data)
    if end + ahead > allocated:
        target = -(-(end + ahead) // step) * step
        zeros_from = max(end, allocated)  # what lies between end and allocated is zeros
        try:
            pwrite_all(fd, bytes(target - zeros_from), zeros_from)
            allocated = target
        except OSError:
            os.ftruncate(fd, allocated)
            allocated = max(end, allocated)
    pwrite_all(fd, data, offset, sync=sync)
    return allocated


# Where the kernel supports it, a write with RWF_DSYNC is write plus fdatasync of its own
# range in one call (and one GIL hand-off instead of two); set to 0 if it is refused.
_dsync_flag: int = getattr(os, "RWF_DSYNC", 0)


def pwrite_all(fd: int, data: bytes, offset: int, *, sync: bool = False) -> None:
    """Write every byte at ``offset`` or raise (a short write is retried to get its errno).

    With ``sync``, the bytes (and what is needed to read them back, e.g. the file size)
    are durable on return, as after fdatasync. Only these bytes: data written earlier
    without ``sync`` needs its own fdatasync.
    """
    global _dsync_flag
    view = memoryview(data)
    flags = _dsync_flag if sync else 0
    while view:
        if flags:
            try:
                written = os.pwritev(fd, [view], offset, flags)
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                _dsync_flag = flags = 0  # refused before anything was written
                continue
        else:
            written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
    if sync and not flags:
        os.fdatasync(fd)


def written_part(data: bytes) -> tuple[bytes, bytes]:
    """(whole lines, unterminated or torn rest) of a segment's bytes, ignoring the zero tail.

    The first NUL marks where writing stopped (no entry holds one). What lies between
    the last complete line before it and the last non-NUL byte is a torn write: the
    bytes of a crashed batch, possibly with holes if its pages reached disk out of order.
    """
    nul = data.find(b"\0")
    if nul < 0:
        cut = data.rfind(b"\n") + 1
        return data[:cut], data[cut:]
    cut = data.rfind(b"\n", 0, nul) + 1
    return data[:cut], data[cut:].rstrip(b"\0")


def trim(fd: int, size: int) -> None:
    """Cut the zero-filled preallocation off, so the file ends with its last line."""
    os.ftruncate(fd, size)
    os.fdatasync(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte or raise; a short write (disk full) is retried to get its errno."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def seal(fd: int, path: Path, size: int, *, immutable: bool) -> None:
    """Trim a full segment to ``size``, make it read-only (0444) and, where allowed,
    immutable; closes ``fd``."""
    try:
        trim(fd, size)
        os.fchmod(fd, SEALED_MODE)
    finally:
        os.close(fd)
    if immutable:
        set_immutable(path, True)


def set_immutable(path: Path, on: bool) -> bool:
    """Best-effort ``chattr ±i``; False where the filesystem or privileges do not allow it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        flags[0] = flags[0] | _FS_IMMUTABLE_FL if on else flags[0] & ~_FS_IMMUTABLE_FL
        fcntl.ioctl(fd, _FS_IOC_SETFLAGS, flags)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def is_immutable(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        return bool(flags[0] & _FS_IMMUTABLE_FL)
    except OSError:
        return False
    finally:
        os.close(fd)


def remove_sealed(path: Path) -> None:
    """Delete a sealed segment (for pruning): clear the immutable flag first."""
    set_immutable(path, False)
    os.unlink(path)


def first_line(path: Path) -> bytes | None:
    """The first complete line (without newline), or None if the file has none."""
    with open(path, "rb") as f:
        chunks = []
        while chunk := f.read(_TAIL_CHUNK):
            end = chunk.find(b"\n")
            nul = chunk.find(b"\0")
            if nul >= 0 and (end < 0 or nul < end):
                return None  # the preallocated tail begins before a line ends
            if end >= 0:
                chunks.append(chunk[:end])
                return b"".join(chunks)
            chunks.append(chunk)
    return None


def last_line(path: Path) -> tuple[bytes | None, int, bool]:
    """(last complete line without newline or None, file size, whether the file ends in "\\n")."""
    with open(path, "rb") as f:
        size = _data_end(f, f.seek(0, os.SEEK_END))
        if size == 0:
            return None, 0, True
        f.seek(size - 1)
        terminated = f.read(1) == b"\n"
        # The newline that ends the last complete line; an unterminated tail is not a line.
        end = size - 1 if terminated else _rfind_newline(f, size)
        if end < 0:
            return None, size, terminated
        start = _rfind_newline(f, end) + 1
        f.seek(start)
        line = f.read(end - start)
        if b"\0" in line:  # a torn write with holes: the written lines end before it
            f.seek(0)
            whole, rest = written_part(f.read(size))
            last = whole[:-1].rsplit(b"\n", 1)[-1] if whole else None
            return last, len(whole) + len(rest), not rest
        return line, size, terminated


def _data_end(f: BinaryIO, size: int) -> int:
    """Where the data ends: after the last non-NUL byte (the preallocated tail is zeros)."""
    pos = size
    while pos > 0:
        start = max(0, pos - _TAIL_CHUNK)
        f.seek(start)
        chunk = f.read(pos - start).rstrip(b"\0")
        if chunk:
            return start + len(chunk)
        pos = start
    return 0


def iter_written_lines(path: Path) -> Iterator[bytes]:
    """Every complete line (with its newline) before the zero-filled tail, read in blocks."""
    with open(path, "rb") as f:
        rest = b""
        while block := f.read(PREALLOCATE_STEP):
            nul = block.find(b"\0")
            if nul >= 0:
                block = block[:nul]
            lines = (rest + block).split(b"\n")
            rest = lines.pop()
            for line in lines:
                yield line + b"\n"
            if nul >= 0:
                return


def _rfind_newline(f: BinaryIO, before: int) -> int:
    """Offset of the last "\\n" strictly before ``before``, or -1."""
    pos = before
    while pos > 0:
        start = max(0, pos - _TAIL_CHUNK)
        f.seek(start)
        chunk = f.read(pos - start)
        found = chunk.rfind(b"\n")
        if found >= 0:
            return start + found
        pos = start
    return -1


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def remove_stale_temporaries(directory: Path) -> None:
    """Delete what an interrupted :func:`atomic_write` left behind (call with the lock held)."""
    for path in directory.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            path.unlink()


def make_journal_dir(directory: Path) -> None:
    """Create the journal directory (0700: it holds PHI) durably, if it does not exist."""
    if directory.is_dir():
        return
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fsync_dir(directory.parent)


class DirectoryLock:
    """An exclusive flock on ``.lock`` in the journal directory, held while open.

    Released by the kernel when the process dies, so a ``kill -9`` never leaves
    a stale lock behind.
    """

    def __init__(self, directory: Path) -> None:
        self._path = directory / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
