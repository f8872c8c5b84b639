"""The console's search index: incremental, checked link by link, rebuilt when the journal
no longer matches it; and the FTS query it builds from what a viewer typed.

Journals here are written line by line with the journal's own ``link`` (the index reads
links, not signatures), so each test can shape the damage it needs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.console.index import SearchIndex
from gateway.console.search import ActivityFilter, Reader, fts_query
from gateway.journal.chain import genesis, link
from gateway.journal.segments import segment_name


class Lines:
    """A journal directory written one chained line at a time."""

    def __init__(self, directory: Path, journal_id: str = "test") -> None:
        directory.mkdir(exist_ok=True)
        self.directory, self.seq, self.prev = directory, 0, genesis(journal_id)
        self.path = directory / segment_name(1)

    def add(self, kind: str, **fields: object) -> bytes:
        self.seq += 1
        line = json.dumps({"seq": self.seq, "time": f"2026-12-01T10:00:{self.seq % 60:02d}Z",
                           "type": kind, "prev": self.prev, **fields}).encode()
        with open(self.path, "ab") as f:
            f.write(line + b"\n")
        self.prev = link(line)
        return line

    def session(self, sid: str, identity: str, *sql: str, deny: bool = False) -> None:
        self.add("session_start", session=sid, identity=identity, groups=["g"],
                 client="10.0.0.1:5000", database="clinic", application_name="psql",
                 tls=None, reason=None)
        for n, text in enumerate(sql, 1):
            self.add("statement", session=sid, identity=identity, client="10.0.0.1:5000",
                     database="clinic", n=n, sql=text, decision="deny" if deny else "allow",
                     rules=["r"], tables=["clinic.public.patients"],
                     phi_tables=["clinic.public.patients"])
            self.add("outcome", session=sid, n=n, rows=0 if deny else 3, bytes=10,
                     duration_ms=1.0, sqlstate="42501" if deny else None)
        self.add("session_end", session=sid, identity=identity, duration_s=1.0, end="client")


def search(index: SearchIndex, **where: object) -> list[str]:
    with Reader(index.path) as reader:
        rows, _, _ = reader.activity(ActivityFilter(**where))  # type: ignore[arg-type]
    return [row["sql"] for row in rows]


def test_updates_are_incremental(tmp_path: Path) -> None:
    journal = Lines(tmp_path / "journal")
    journal.session("s1", "alice", "SELECT mrn FROM patients WHERE id = 1")
    index = SearchIndex(tmp_path / "index.sqlite3", journal.directory)
    first = index.update()
    assert first.entries == 4 and not first.rebuilt and first.broken is None
    journal.session("s2", "bob", "SELECT last_name FROM patients WHERE id = 2", deny=True)
    second = index.update()
    assert second.entries == 8 and second.last_seq == 8 and not second.rebuilt
    assert search(index, identity="bob") == ["SELECT last_name FROM patients WHERE id = 2"]
    assert search(index, decision="deny", q="last_name") == search(index, identity="bob")
    assert index.update().entries == 8  # nothing new, nothing read twice
    index.close()
    reopened = SearchIndex(tmp_path / "index.sqlite3", journal.directory)
    assert reopened.update().entries == 8 and len(search(reopened)) == 2


def test_a_line_in_progress_and_the_zero_tail_are_not_read(tmp_path: Path) -> None:
    journal = Lines(tmp_path / "journal")
    journal.session("s1", "alice", "SELECT 1")
    with open(journal.path, "ab") as f:
        f.write(b'{"seq": 5, "time": "2026')  # a write in progress
    index = SearchIndex(tmp_path / "index.sqlite3", journal.directory)
    assert index.update().entries == 4
    zeros = Lines(tmp_path / "other")
    zeros.session("s1", "alice", "SELECT 1")
    with open(zeros.path, "ab") as f:
        f.write(b"\x00" * 4096)  # the preallocated tail
    assert SearchIndex(tmp_path / "other.sqlite3", zeros.directory).update().entries == 4


def test_a_broken_link_stops_indexing_there(tmp_path: Path) -> None:
    journal = Lines(tmp_path / "journal")
    journal.session("s1", "alice", "SELECT 'before'")
    journal.session("s2", "alice", "SELECT 'after'")
    data = journal.path.read_bytes()
    journal.path.write_bytes(data.replace(b"'before'", b"'BEFORE'"))
    index = SearchIndex(tmp_path / "index.sqlite3", journal.directory)
    state = index.update()
    assert state.broken is not None and "prev does not link" in state.broken
    assert state.last_seq == 2  # the altered line itself; nothing after it
    assert search(index, q="after") == []


def test_a_replaced_journal_is_indexed_afresh(tmp_path: Path) -> None:
    journal = Lines(tmp_path / "journal")
    journal.session("s1", "alice", "SELECT 'old'")
    index = SearchIndex(tmp_path / "index.sqlite3", journal.directory)
    index.update()
    journal.path.unlink()
    replaced = Lines(journal.directory, journal_id="another")
    replaced.session("s9", "carol", "SELECT 'new'")
    replaced.session("s10", "carol", "SELECT 'newer'")
    state = index.update()
    assert state.rebuilt and state.entries == 8
    assert search(index, q="old") == [] and len(search(index, identity="carol")) == 2


def test_a_rolled_back_journal_is_indexed_afresh(tmp_path: Path) -> None:
    journal = Lines(tmp_path / "journal")
    journal.session("s1", "alice", "SELECT 'kept'")
    kept = journal.path.read_bytes()
    journal.session("s2", "alice", "SELECT 'rolled back'")
    index = SearchIndex(tmp_path / "index.sqlite3", journal.directory)
    index.update()
    journal.path.write_bytes(kept)
    state = index.update()
    assert state.rebuilt and state.entries == 4 and search(index, q="rolled") == []


@pytest.mark.parametrize("typed", ['"', "a OR b", "NEAR(a b)", "sql:*", "x AND", "^a", "*"])
def test_typed_search_operators_are_searched_for_not_obeyed(tmp_path: Path,
                                                            typed: str) -> None:
    query = fts_query(typed, None)
    assert query is not None and query.startswith('sql : "')
    journal = Lines(tmp_path / "journal")
    journal.session("s1", "alice", "SELECT 1")
    index = SearchIndex(tmp_path / "index.sqlite3", journal.directory)
    index.update()
    search(index, q=typed)  # no sqlite3.OperationalError


def test_fts_query_joins_words_and_table() -> None:
    assert fts_query("mrn last_name", "patients") == (
        'sql : "mrn" AND sql : "last_name" AND tables : "patients"')
    assert fts_query(None, None) is None
