"""TextReading: following client_encoding and standard_conforming_strings, and the pipelining race
where text was already read under the old rules."""

from __future__ import annotations

import pytest

from gateway.errors import ParameterRefused
from gateway.proxy.textreading import TextReading
from protocols.postgres.errors import ProtocolError


def test_start_up_rules_come_from_the_upstream() -> None:
    reading = TextReading.at_startup({"client_encoding": "SJIS", "server_encoding": "UTF8",
                                      "standard_conforming_strings": "off"})
    assert reading.encoding.codec == "cp932" and not reading.standard_strings
    with pytest.raises(ParameterRefused):
        TextReading.at_startup({"client_encoding": "NOPE"})


def test_changes_are_followed() -> None:
    reading = TextReading()
    reading.follow("client_encoding", "LATIN1", read_since=reading.count)
    assert reading.encoding.name == "LATIN1"
    reading.follow("standard_conforming_strings", "off", read_since=reading.count)
    assert not reading.standard_strings


def test_ascii_text_read_after_the_change_is_harmless() -> None:
    reading = TextReading()
    boundary = reading.count
    reading.read(b"Q\x00\x00\x00\x0dSELECT 1\x00")  # pipelined behind the SET
    reading.follow("client_encoding", "SJIS", read_since=boundary)
    assert reading.encoding.name == "SJIS"


@pytest.mark.parametrize(("setting", "value", "text"), [
    ("client_encoding", "SJIS", "SELECT E'表'".encode("cp932")),
    ("standard_conforming_strings", "off", b"SELECT 'a\\'"),
])
def test_text_read_the_old_way_behind_a_change_ends_the_session(
        setting: str, value: str, text: bytes) -> None:
    reading = TextReading()
    boundary = reading.count
    reading.read(text)
    with pytest.raises(ProtocolError, match="already read the old way"):
        reading.follow(setting, value, read_since=boundary)
