"""The container: sealed chunks open only in place, in order, in their file, with the right key."""

from __future__ import annotations

import os

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.recording.errors import RecordingError, RecordingKeyError, RecordingTampered
from gateway.recording.format import Opener, Sealer, new_header, parse_header, unwrap_data_key
from gateway.recording.keys import MasterKey

KEY = MasterKey.from_bytes(bytes(range(32)))


def recording(chunks: list[bytes], *, final: bool = True, session: str = "s1") -> bytes:
    header, data_key = new_header(session, 1.0, KEY)
    sealer = Sealer(header, data_key)
    body = b"".join(sealer.seal(c, final=final and i == len(chunks) - 1)
                    for i, c in enumerate(chunks))
    return header + body


def open_all(data: bytes, key: MasterKey = KEY) -> tuple[list[bytes], bool]:
    """Plaintexts of every complete chunk and whether the final one was seen."""
    header = parse_header(data)
    if header is None:
        raise RecordingTampered("no complete header")
    opener = Opener(header, unwrap_data_key(header, key))
    offset, out = len(header.raw), []
    while (chunk := opener.next_chunk(data, offset)) is not None:
        out.append(chunk.plaintext)
        offset = chunk.end
        if chunk.final and offset != len(data):
            raise RecordingTampered("bytes after the final chunk")
    return out, opener.final_seen


def test_round_trip() -> None:
    assert open_all(recording([b"one", b"two", b""])) == ([b"one", b"two", b""], True)


def test_a_cut_file_reads_up_to_its_last_whole_chunk_and_is_not_final() -> None:
    data = recording([b"one", b"two" * 100])
    assert open_all(data[:-10]) == ([b"one"], False)


def test_wrong_key_is_named_not_guessed() -> None:
    with pytest.raises(RecordingKeyError, match="made with key"):
        open_all(recording([b"x"]), MasterKey.from_bytes(os.urandom(32)))


def test_reordered_or_removed_chunks_fail() -> None:
    header, data_key = new_header("s1", 1.0, KEY)
    sealer = Sealer(header, data_key)
    first, second, third = (sealer.seal(p) for p in (b"a", b"b", b"c"))
    with pytest.raises(RecordingTampered, match="expected"):
        open_all(header + second + first)
    with pytest.raises(RecordingTampered, match="expected"):
        open_all(header + first + third)


def test_a_chunk_from_another_recording_fails() -> None:
    mine, theirs = recording([b"a"], final=False), recording([b"b"], final=False, session="s2")
    header = parse_header(mine)
    assert header is not None
    with pytest.raises(RecordingTampered):
        open_all(mine + theirs[len(parse_header(theirs).raw):])  # type: ignore[union-attr]


def test_not_a_recording() -> None:
    with pytest.raises(RecordingError, match="not a PHIGate recording"):
        parse_header(b"PK\x03\x04 definitely a zip file")


@settings(max_examples=200, deadline=None)
@example(position=10, bit=0)  # the header's length: the header never ends
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_is_detected(position: int, bit: int) -> None:
    data = bytearray(recording([b"SELECT 1;", b"row data " * 20, b"the end"]))
    data[position % len(data)] ^= 1 << bit
    with pytest.raises(RecordingError):
        plaintexts, final = open_all(bytes(data))
        # A flip in a length field may leave a shorter, "incomplete" file: never a complete one.
        if not final:
            raise RecordingTampered("incomplete")
