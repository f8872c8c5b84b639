"""Property: flipping any byte of any segment (or of checkpoint.json) fails verification."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.journal import verify
from gateway.journal.verify import verify_journal

from .conftest import segment_files


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(min_value=0), where=st.floats(min_value=0, max_value=1,
                                                       exclude_max=True),
       xor=st.integers(min_value=1, max_value=255))
@example(which=10**9, where=0.999999, xor=0x0A)  # the very last byte: the final newline
@example(which=0, where=0.0, xor=1)  # the first byte of the first segment
def test_any_flipped_byte_fails_verify(sample_template: Path, public_key: Ed25519PublicKey,
                                       which: int, where: float, xor: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch) / "journal"
        shutil.copytree(sample_template, directory)
        files = [*segment_files(directory), directory / "checkpoint.json"]
        target = files[which % len(files)] if which < 10**9 else files[-2]
        data = bytearray(target.read_bytes())
        offset = min(int(where * len(data)), len(data) - 1)
        data[offset] ^= xor
        target.chmod(0o644)
        target.write_bytes(bytes(data))
        report = verify_journal(directory, public_key, workers=1)
        assert not report.ok, (target.name, offset, xor)


def test_sample_is_intact(sample_template: Path, public_key: Ed25519PublicKey) -> None:
    assert verify_journal(sample_template, public_key).ok


def test_parallel_verify_agrees(sample_template: Path, public_key: Ed25519PublicKey,
                                monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Force slicing on a small journal so the multi-process path is exercised.
    monkeypatch.setattr(verify, "CHUNK_BYTES", 1024)
    report = verify_journal(sample_template, public_key, workers=2)
    assert report.ok, report.summary()
    single = verify_journal(sample_template, public_key, workers=1)
    assert (report.entries, report.bytes, report.last_seq) == (
        single.entries, single.bytes, single.last_seq)


def test_parallel_verify_finds_the_same_fault(sample: Path, public_key: Ed25519PublicKey,
                                              monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(verify, "CHUNK_BYTES", 700)
    target = segment_files(sample)[1]
    lines = target.read_bytes().splitlines(keepends=True)
    lines[5] = lines[5].replace(b'"time":"2', b'"time":"3', 1)
    target.write_bytes(b"".join(lines))
    parallel = verify_journal(sample, public_key, workers=2)
    single = verify_journal(sample, public_key, workers=1)
    assert not parallel.ok and parallel.failure == single.failure
    assert parallel.failure is not None and parallel.failure.line == 6
