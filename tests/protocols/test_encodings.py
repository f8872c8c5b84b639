"""Client encodings: every PostgreSQL client encoding maps to a reader, and readers decode as the
server does (multi-byte characters whose second byte is a backslash stay one character)."""

from __future__ import annotations

import codecs

import pytest

from protocols.postgres import peek
from protocols.postgres.encodings import (
    ASCII_ONLY,
    PYTHON_CODECS,
    EncodingRefused,
    client_encoding,
)

# PostgreSQL 15's client encodings (src/common/encnames.c, pg_enc2name_tbl without the
# server-only ones).
POSTGRES_CLIENT_ENCODINGS = (
    "SQL_ASCII EUC_JP EUC_CN EUC_KR EUC_TW EUC_JIS_2004 UTF8 MULE_INTERNAL LATIN1 LATIN2 LATIN3 "
    "LATIN4 LATIN5 LATIN6 LATIN7 LATIN8 LATIN9 LATIN10 WIN1256 WIN1258 WIN866 WIN874 KOI8R "
    "WIN1251 WIN1252 ISO_8859_5 ISO_8859_6 ISO_8859_7 ISO_8859_8 WIN1250 WIN1253 WIN1254 WIN1255 "
    "WIN1257 KOI8U SJIS BIG5 GBK UHC GB18030 JOHAB SHIFT_JIS_2004").split()


@pytest.mark.parametrize("name", POSTGRES_CLIENT_ENCODINGS)
def test_every_client_encoding_has_a_reader(name: str) -> None:
    reader = client_encoding(name)
    assert reader is not None
    codecs.lookup(reader.codec)
    assert reader.ascii_only == (name in ASCII_ONLY)


def test_names_are_matched_case_insensitively_and_unknown_ones_refused() -> None:
    assert client_encoding("latin1") == client_encoding("LATIN1")
    assert client_encoding("KLINGON") is None
    assert set(PYTHON_CODECS) | ASCII_ONLY | {"SQL_ASCII"} == set(POSTGRES_CLIENT_ENCODINGS)


def test_sql_ascii_reads_as_the_server_encoding() -> None:
    reader = client_encoding("SQL_ASCII", "LATIN1")
    assert reader is not None and reader.codec == "latin_1"


@pytest.mark.parametrize(("name", "text"), [("SJIS", "表"), ("BIG5", "許"), ("GBK", "乗")])
def test_backslash_second_bytes_stay_inside_the_character(name: str, text: str) -> None:
    reader = client_encoding(name)
    assert reader is not None
    encoded = text.encode(reader.codec)
    assert encoded[1:] == b"\\"  # the case a byte scanner gets wrong
    frame = b"Q" + (len(encoded) + 20).to_bytes(4, "big") + b"SELECT E'" + encoded + b"';\x00"
    frame = frame[:1] + (len(frame) - 1).to_bytes(4, "big") + frame[5:]
    assert peek.query_sql(frame, reader) == f"SELECT E'{text}';"


def test_invalid_bytes_are_refused_with_postgres_wording() -> None:
    reader = client_encoding("UTF8")
    assert reader is not None
    with pytest.raises(EncodingRefused, match='invalid byte sequence for encoding "UTF8": 0xff'):
        reader.decode(b"SELECT '\xff'")
    euc_tw = client_encoding("EUC_TW")
    assert euc_tw is not None and euc_tw.decode(b"SELECT 1") == "SELECT 1"
    with pytest.raises(EncodingRefused, match="no Python codec") as caught:
        euc_tw.decode(b"SELECT '\xc4\xe3'")
    assert caught.value.sqlstate == "22021"
