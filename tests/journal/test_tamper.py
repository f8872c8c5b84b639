"""The tamper suite: every kind of tampering makes `phigate journal verify` exit 1 and say where.

Each case copies a closed sample journal of several segments, damages it the
way an attacker (or a failing disk) would, and runs the real CLI.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path

from gateway.journal import Journal

from .conftest import read_lines, rehash, run_cli, segment_files, write_lines


def verify(directory: Path, keypair: tuple[Path, Path], *extra: str | Path) -> tuple[int, str]:
    result = run_cli("journal", "verify", directory, "--key", keypair[1], *extra)
    return result.returncode, result.stdout + result.stderr


def assert_tampered(directory: Path, keypair: tuple[Path, Path], *, seq: int | None = None,
                    file: str | None = None, line: int | None = None, what: str = "",
                    extra: tuple[str | Path, ...] = ()) -> str:
    code, out = verify(directory, keypair, *extra)
    assert code == 1, out
    assert out.startswith("TAMPERED: "), out
    if seq is not None:
        assert f"seq {seq}," in out or f"seq {seq}:" in out, out
    if file is not None:
        assert file in out, out
    if line is not None:
        assert f"line {line}:" in out, out
    assert re.search(what, out), out
    return out


def seq_of(line: bytes) -> int:
    return int(json.loads(line)["seq"])


def test_intact_sample_verifies(sample: Path, keypair: tuple[Path, Path]) -> None:
    code, out = verify(sample, keypair)
    assert code == 0, out
    assert out.startswith("OK: journal "), out
    assert len(segment_files(sample)) >= 4


def test_edit_one_byte_in_a_line(sample: Path, keypair: tuple[Path, Path]) -> None:
    target = segment_files(sample)[1]
    lines = read_lines(target)
    k = len(lines) // 2
    lines[k] = lines[k].replace(b'"time":"2', b'"time":"3', 1)
    write_lines(target, lines)
    assert_tampered(sample, keypair, seq=seq_of(lines[k]), file=target.name, line=k + 1,
                    what="was altered")


def test_edit_one_byte_in_the_final_checkpoint(sample: Path, keypair: tuple[Path, Path]) -> None:
    target = segment_files(sample)[-1]
    lines = read_lines(target)
    last = lines[-1]
    assert json.loads(last)["type"] == "checkpoint"
    lines[-1] = last.replace(b'"time":"2', b'"time":"3', 1)
    write_lines(target, lines)
    assert_tampered(sample, keypair, seq=seq_of(last), file=target.name, line=len(lines),
                    what="signature does not verify")


def test_delete_a_line(sample: Path, keypair: tuple[Path, Path]) -> None:
    target = segment_files(sample)[2]
    lines = read_lines(target)
    removed = lines.pop(3)
    write_lines(target, lines)
    assert_tampered(sample, keypair, seq=seq_of(removed), file=target.name, line=4,
                    what="removed")


def test_insert_a_line(sample: Path, keypair: tuple[Path, Path]) -> None:
    target = segment_files(sample)[1]
    lines = read_lines(target)
    expected = seq_of(lines[2])
    lines.insert(2, lines[5])
    write_lines(target, lines)
    assert_tampered(sample, keypair, seq=expected, file=target.name, line=3,
                    what="follows|inserted|moved")


def test_insert_a_forged_line_with_a_valid_link(sample: Path, keypair: tuple[Path, Path]) -> None:
    from gateway.journal.canonical import encode_line
    from gateway.journal.chain import link

    target = segment_files(sample)[1]
    lines = read_lines(target)
    before = json.loads(lines[2])
    forged = {"type": "statement", "sql": "SELECT 'nothing to see'", "session": "s-alice",
              "seq": before["seq"] + 1, "time": before["time"], "prev": link(lines[2][:-1])}
    lines.insert(3, encode_line(forged))
    write_lines(target, lines)
    # The forged line links correctly, so the break shows at the genuine line after it.
    assert_tampered(sample, keypair, seq=before["seq"] + 2, file=target.name, line=5,
                    what="inserted before this one")


def test_swap_two_lines(sample: Path, keypair: tuple[Path, Path]) -> None:
    target = segment_files(sample)[1]
    lines = read_lines(target)
    lines[3], lines[4] = lines[4], lines[3]
    write_lines(target, lines)
    assert_tampered(sample, keypair, seq=seq_of(lines[4]), file=target.name, line=4,
                    what="seq")


def test_truncate_below_the_newest_checkpoint(sample: Path, keypair: tuple[Path, Path]) -> None:
    target = segment_files(sample)[-1]
    lines = read_lines(target)
    kept = lines[:-3]
    write_lines(target, kept)
    assert_tampered(sample, keypair, seq=seq_of(kept[-1]) + 1, file=target.name,
                    what="truncated")


def test_delete_a_middle_segment(sample: Path, keypair: tuple[Path, Path]) -> None:
    files = segment_files(sample)
    files[2].unlink()
    assert_tampered(sample, keypair, file=files[3].name, line=1, what="segment is missing")


def test_delete_the_first_segment(sample: Path, keypair: tuple[Path, Path]) -> None:
    files = segment_files(sample)
    files[0].unlink()
    assert_tampered(sample, keypair, file=files[1].name, line=1,
                    what="no prune entry records")


def test_delete_the_newest_segment(sample: Path, keypair: tuple[Path, Path]) -> None:
    files = segment_files(sample)
    files[-1].unlink()
    assert_tampered(sample, keypair, file=files[-2].name, what="truncated")


def test_swap_two_segments(sample: Path, keypair: tuple[Path, Path]) -> None:
    files = segment_files(sample)
    a, b = files[1], files[2]
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    assert_tampered(sample, keypair, file=a.name, line=1, what="swapped")


def test_rewrite_and_rehash_without_the_key(sample: Path, keypair: tuple[Path, Path]) -> None:
    def erase_a_denial(entries: list[dict[str, object]]) -> list[dict[str, object]]:
        victim = next(e for e in entries if e.get("decision") == "deny")
        victim["decision"] = "allow"
        return entries

    rehash(sample, erase_a_denial)
    assert_tampered(sample, keypair, what="checkpoint signature does not verify")


def test_rehash_and_resign_with_another_key(sample: Path, keypair: tuple[Path, Path],
                                            tmp_path: Path) -> None:
    from gateway.journal.checkpoints import sign
    from gateway.journal.keys import generate, load_private

    other = load_private(generate(tmp_path / "attacker")[0])

    def drop_and_resign(entries: list[dict[str, object]]) -> list[dict[str, object]]:
        return [e for e in entries if e.get("sql") != "SELECT * FROM public.visits WHERE id = 0"]

    rehash(sample, drop_and_resign)
    # Re-sign each checkpoint with the attacker's key: still not the journal's key.
    for f in segment_files(sample):
        out = []
        for line in read_lines(f):
            entry = json.loads(line)
            if entry["type"] == "checkpoint":
                cp = sign(other, journal=entry["journal"], seq=entry["seq"], head=entry["head"],
                          time=entry["time"])
                entry["sig"] = cp.sig
                from gateway.journal.canonical import encode_line
                line = encode_line(entry)
            out.append(line)
        write_lines(f, out)
    assert_tampered(sample, keypair, what="checkpoint signature does not verify")


def test_strip_checkpoints_and_rehash(sample: Path, keypair: tuple[Path, Path]) -> None:
    rehash(sample, lambda entries: [e for e in entries if e["type"] != "checkpoint"])
    assert_tampered(sample, keypair, what="no signed checkpoint")


def test_strip_all_but_the_last_checkpoint(sample: Path, keypair: tuple[Path, Path]) -> None:
    rehash(sample, lambda entries: [e for e in entries[:-1] if e["type"] != "checkpoint"]
           + entries[-1:])
    assert_tampered(sample, keypair, what="checkpoint signature does not verify")


def test_strip_checkpoints_and_checkpoint_file(sample: Path, keypair: tuple[Path, Path]) -> None:
    rehash(sample, lambda entries: [e for e in entries if e["type"] != "checkpoint"])
    (sample / "checkpoint.json").unlink()
    assert_tampered(sample, keypair, what="no signed checkpoint")


def test_delete_the_checkpoint_file(sample: Path, keypair: tuple[Path, Path]) -> None:
    (sample / "checkpoint.json").unlink()
    assert_tampered(sample, keypair, file="checkpoint.json", what="missing")


def test_edit_the_checkpoint_file(sample: Path, keypair: tuple[Path, Path]) -> None:
    path = sample / "checkpoint.json"
    path.write_bytes(path.read_bytes().replace(b'"time":"2', b'"time":"3'))
    assert_tampered(sample, keypair, file="checkpoint.json", what="signature")


def test_rollback_is_caught_with_witness_copies(tmp_path: Path, keypair: tuple[Path, Path],
                                                settings_for) -> None:  # type: ignore[no-untyped-def]
    witness = tmp_path / "witness"
    witness.mkdir()
    directory = tmp_path / "journal"
    settings = settings_for(directory, checkpoint_copies=(witness,))

    async def session(n: int) -> None:
        journal = await Journal.open(settings)
        for i in range(n):
            await journal.append("statement", {"sql": f"SELECT {i}"})
        await journal.close()

    asyncio.run(session(5))
    old = tmp_path / "old-copy"
    shutil.copytree(directory, old)
    asyncio.run(session(5))
    assert verify(directory, keypair, "--checkpoints", witness)[0] == 0
    shutil.rmtree(directory)
    shutil.copytree(old, directory)
    # The old copy is internally consistent: only the witness can tell.
    assert verify(directory, keypair)[0] == 0
    assert_tampered(directory, keypair, what="rolled back", extra=("--checkpoints", witness))


def test_witness_without_this_journal(sample: Path, keypair: tuple[Path, Path],
                                      tmp_path: Path) -> None:
    empty = tmp_path / "witness"
    empty.mkdir()
    assert_tampered(sample, keypair, what="holds no checkpoint for journal",
                    extra=("--checkpoints", empty))


def test_wrong_key_is_not_intact(sample: Path, tmp_path: Path) -> None:
    from gateway.journal.keys import generate

    other = generate(tmp_path / "other")
    assert_tampered(sample, other, what="signature")


def test_usage_errors_exit_2(sample: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    assert run_cli("journal", "verify", tmp_path / "nowhere", "--key", keypair[1]).returncode == 2
    assert run_cli("journal", "verify", sample, "--key", tmp_path / "nokey").returncode == 2
    assert run_cli("journal", "verify", sample, "--key", keypair[0]).returncode == 2
    assert run_cli("journal", "verify", sample).returncode == 2
