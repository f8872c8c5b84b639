"""The recording container: a plaintext header, then authenticated, encrypted chunks.

Layout (all integers big-endian)::

    header  MAGIC | u32 n | n bytes of JSON {session, created, key_id, wrapped_key, ...}
    chunk   u32 length | u64 index | u8 flags | 12-byte nonce | ciphertext (length bytes)

Each session gets a fresh random AES-256-GCM data key, stored in the header
wrapped (AES-256-GCM) by the master key with the session id as associated
data. Every chunk is sealed under the data key with associated data binding
it to this file (the SHA-256 of the header), to its position (``index``) and
to its flags (``FLAG_FINAL`` marks the session's last chunk). So an edited
byte, a reordered, dropped or spliced-in chunk, or a forged end all fail
authentication; a file cut short shows as a missing final chunk (and its
SHA-256 no longer matches the journal's). Pure functions on bytes: the writer
seals, the reader opens; neither does I/O here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import zlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import RecordingError, RecordingKeyError, RecordingTampered
from .keys import KEY_BYTES, MasterKey

MAGIC = b"PHIREC\x00\x01"
VERSION = 1
SUFFIX = ".phirec"
NONCE_BYTES = 12
CHUNK_HEAD = struct.Struct(">IQB")  # ciphertext length, chunk index, flags
FLAG_FINAL = 0x01
_U32 = struct.Struct(">I")
_WRAP_INFO = b"phigate-recording-data-key:"
# Readers refuse bigger headers and chunks instead of allocating whatever a damaged
# length field says. Writers stay far below: chunks are cut at writer.CHUNK_TARGET.
MAX_HEADER_BYTES = 64 * 1024
MAX_CHUNK_BYTES = 64 * 1024 * 1024
# zlib level 1: most of the size win on SQL and result rows at a fraction of the CPU.
COMPRESS_LEVEL = 1


@dataclass(frozen=True, slots=True)
class FileHeader:
    session: str
    created: float  # epoch seconds
    key_id: str
    wrapped_key: bytes = field(repr=False)
    raw: bytes = field(repr=False)  # the header bytes as stored, MAGIC included

    @property
    def file_id(self) -> bytes:
        return hashlib.sha256(self.raw).digest()


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    final: bool
    plaintext: bytes
    start: int  # offset of the chunk in the file
    end: int


def new_header(session: str, created: float, master: MasterKey) -> tuple[bytes, bytes]:
    """A header for a new recording and its fresh data key: (header bytes, data key)."""
    data_key = AESGCM.generate_key(bit_length=8 * KEY_BYTES)
    nonce = os.urandom(NONCE_BYTES)
    wrapped = nonce + AESGCM(master.value).encrypt(nonce, data_key, _wrap_aad(session))
    body = json.dumps({
        "version": VERSION, "session": session, "created": created, "key_id": master.key_id,
        "cipher": "AES-256-GCM", "compression": "zlib",
        "wrapped_key": base64.b64encode(wrapped).decode("ascii"),
    }, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return MAGIC + _U32.pack(len(body)) + body, data_key


def parse_header(buf: bytes | bytearray | memoryview) -> FileHeader | None:
    """The header at the start of ``buf``; None if more bytes are needed."""
    if len(buf) < len(MAGIC) + _U32.size:
        if bytes(buf) != MAGIC[:len(buf)]:
            raise RecordingError("not a PHIGate recording (bad magic)")
        return None
    if bytes(buf[:len(MAGIC)]) != MAGIC:
        raise RecordingError("not a PHIGate recording (bad magic or unknown version)")
    (length,) = _U32.unpack_from(buf, len(MAGIC))
    if length > MAX_HEADER_BYTES:
        raise RecordingTampered(f"header length {length} is implausible", offset=0)
    end = len(MAGIC) + _U32.size + length
    if len(buf) < end:
        return None
    try:
        fields = json.loads(bytes(buf[len(MAGIC) + _U32.size:end]))
        return FileHeader(session=str(fields["session"]), created=float(fields["created"]),
                          key_id=str(fields["key_id"]),
                          wrapped_key=base64.b64decode(fields["wrapped_key"], validate=True),
                          raw=bytes(buf[:end]))
    except (ValueError, KeyError, TypeError) as e:
        raise RecordingTampered(f"header is damaged: {e}", offset=0) from e


def unwrap_data_key(header: FileHeader, master: MasterKey) -> bytes:
    if header.key_id != master.key_id:
        raise RecordingKeyError(f"recording of session {header.session} was made with key "
                                f"{header.key_id}, not the key given ({master.key_id})")
    nonce, sealed = header.wrapped_key[:NONCE_BYTES], header.wrapped_key[NONCE_BYTES:]
    try:
        return AESGCM(master.value).decrypt(nonce, sealed, _wrap_aad(header.session))
    except InvalidTag as e:
        raise RecordingTampered(f"the data key of session {header.session} fails "
                                "authentication (header edited)", offset=0) from e


class Sealer:
    """Seals a session's chunks in order; the index is the position, never reused."""

    __slots__ = ("_aead", "_file_id", "index")

    def __init__(self, header: bytes, data_key: bytes) -> None:
        self._aead = AESGCM(data_key)
        self._file_id = hashlib.sha256(header).digest()
        self.index = 0

    def seal(self, plaintext: bytes, *, final: bool = False) -> bytes:
        flags = FLAG_FINAL if final else 0
        head_fields = (self.index, flags)
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, zlib.compress(plaintext, COMPRESS_LEVEL),
                                    _chunk_aad(self._file_id, *head_fields))
        self.index += 1
        return CHUNK_HEAD.pack(len(sealed), *head_fields) + nonce + sealed


class Opener:
    """Opens chunks in order from a growing buffer (a whole file, or one being followed)."""

    __slots__ = ("_aead", "_file_id", "index", "final_seen")

    def __init__(self, header: FileHeader, data_key: bytes) -> None:
        self._aead = AESGCM(data_key)
        self._file_id = header.file_id
        self.index = 0
        self.final_seen = False

    def next_chunk(self, buf: bytes | bytearray | memoryview, offset: int, *,
                   base: int = 0) -> Chunk | None:
        """The chunk at ``offset`` of ``buf``; None until all of it is in ``buf``.

        ``base`` is where ``buf`` starts in the file, for positions in messages."""
        if len(buf) - offset < CHUNK_HEAD.size + NONCE_BYTES:
            return None
        length, index, flags = CHUNK_HEAD.unpack_from(buf, offset)
        at = base + offset
        if length > MAX_CHUNK_BYTES or length < 16:
            raise RecordingTampered(f"chunk {self.index} at byte {at} has an implausible "
                                    f"length ({length})", offset=at, chunk=self.index)
        body = offset + CHUNK_HEAD.size + NONCE_BYTES
        if len(buf) < body + length:
            return None
        if self.final_seen:
            raise RecordingTampered(f"bytes after the final chunk, at byte {at}",
                                    offset=at, chunk=index)
        if index != self.index:
            raise RecordingTampered(f"chunk {self.index} expected at byte {at}, found "
                                    f"chunk {index} (chunks removed or reordered)",
                                    offset=at, chunk=self.index)
        nonce = bytes(buf[offset + CHUNK_HEAD.size:body])
        try:
            packed = self._aead.decrypt(nonce, bytes(buf[body:body + length]),
                                        _chunk_aad(self._file_id, index, flags))
            plaintext = zlib.decompress(packed)
        except (InvalidTag, zlib.error) as e:
            raise RecordingTampered(f"chunk {index} at byte {at} fails authentication "
                                    "(edited)", offset=at, chunk=index) from e
        self.index += 1
        self.final_seen = bool(flags & FLAG_FINAL)
        return Chunk(index, self.final_seen, plaintext, at, base + body + length)


def _wrap_aad(session: str) -> bytes:
    return _WRAP_INFO + session.encode("utf-8")


def _chunk_aad(file_id: bytes, index: int, flags: int) -> bytes:
    return file_id + struct.pack(">QB", index, flags)
