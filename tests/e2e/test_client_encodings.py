"""Client encodings and ``standard_conforming_strings``: the gateway reads text as the server does.

Real psycopg 3 sessions through ``phigate serve`` with the clinic policy: text sent in SJIS,
LATIN1 and EUC_TW, encodings changed mid-session with ``SET``, backslash escapes with
``standard_conforming_strings = off``, and bytes invalid in the session's encoding. Each bypass
attempt hides a ``DELETE`` (which clinicians may not run) where a byte-level reading of the text
would see a string literal.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import psycopg
import pytest

from tests.conftest import ClusterInfo
from tests.e2e.harness import CLINIC_POLICY, PHIGATE, GatewayProcess

BUSINESS_HOURS = "2024-06-04T10:00:00-04:00"


@pytest.fixture(scope="module")
def clinic(pg_cluster: ClusterInfo, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("encodings"), pg_cluster,
                             {"policies": [str(CLINIC_POLICY)]},
                             env={"PHIGATE_TEST_NOW": BUSINESS_HOURS}).start()
    yield process
    process.stop()


def connect(gateway: GatewayProcess, **params: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(gateway.dsn("alice", **params), autocommit=True)


@pytest.mark.parametrize("encoding", ["SJIS", "BIG5", "GBK", "UHC", "EUC_JP", "LATIN1",
                                      "WIN1252", "LATIN9", "KOI8R"])
def test_text_round_trips_in_the_client_encoding(clinic: GatewayProcess, encoding: str) -> None:
    sample = {"SJIS": "表示", "BIG5": "許功", "GBK": "中文", "UHC": "한국", "EUC_JP": "日本",
              "KOI8R": "щи"}.get(encoding, "café")
    with connect(clinic, client_encoding=encoding) as conn:
        assert conn.info.parameter_status("client_encoding") == encoding
        assert conn.execute(f"SELECT '{sample}'::text").fetchone() == (sample,)
        assert conn.execute("SELECT %s::text", (sample,)).fetchone() == (sample,)


def test_a_backslash_second_byte_does_not_hide_a_statement(clinic: GatewayProcess) -> None:
    # In SJIS, 表 is 0x95 0x5C: read byte by byte, E'表' escapes its closing quote and the
    # DELETE looks like part of a string. The server reads one character and then a DELETE.
    with connect(clinic, client_encoding="SJIS") as conn:
        assert conn.execute("SELECT E'表'").fetchone() == ("表",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="phigate: rule"):
            conn.execute("SELECT E'表'; DELETE FROM patients WHERE id = 1; SELECT '-'")


def test_set_client_encoding_is_followed_mid_session(clinic: GatewayProcess) -> None:
    with connect(clinic) as conn:
        conn.execute("SET client_encoding TO 'SJIS'")
        assert conn.info.encoding == "shift_jis"
        assert conn.execute("SELECT E'表'").fetchone() == ("表",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT E'表'; DELETE FROM patients WHERE id = 1; SELECT '-'")
        conn.execute("RESET client_encoding")
        assert conn.execute("SELECT 'é'").fetchone() == ("é",)


def test_encoding_without_a_python_codec_reads_ascii_only(clinic: GatewayProcess) -> None:
    with connect(clinic) as conn:
        conn.execute("SET client_encoding TO 'EUC_TW'")
        raw = conn.pgconn
        raw.send_query(b"SELECT 'ascii is fine'")
        assert raw.get_result().get_value(0, 0) == b"ascii is fine"
        while raw.get_result() is not None:
            pass
        raw.send_query("SELECT '\xc4\xe3'".encode("latin-1"))
        error = raw.get_result()
        assert error.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"22021"
        assert b"EUC_TW has no Python codec" in (error.error_message or b"")
        while raw.get_result() is not None:
            pass
        raw.send_query(b"SET client_encoding TO 'UTF8'")
        while raw.get_result() is not None:
            pass
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_bytes_invalid_in_the_encoding_are_refused_like_postgres(
        clinic: GatewayProcess) -> None:
    with connect(clinic) as conn:
        raw = conn.pgconn
        raw.send_query(b"SELECT '\xff'")
        error = raw.get_result()
        assert error.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"22021"
        assert error.error_field(psycopg.pq.DiagnosticField.MESSAGE_PRIMARY) == (
            b'invalid byte sequence for encoding "UTF8": 0xff')
        while raw.get_result() is not None:
            pass
        assert conn.execute("SELECT 'still here'").fetchone() == ("still here",)


def test_backslash_escapes_are_read_when_standard_conforming_strings_is_off(
        clinic: GatewayProcess) -> None:
    with connect(clinic, options="-c standard_conforming_strings=off") as conn:
        assert conn.info.parameter_status("standard_conforming_strings") == "off"
        # One string: \' is an escaped quote, so no DELETE runs here.
        text = "SELECT 'a\\'; DELETE FROM patients WHERE id = 1; --'"
        assert conn.execute(text).fetchone() == ("a'; DELETE FROM patients WHERE id = 1; --",)
        # \\ is one backslash: the string ends, and the DELETE is a statement of its own.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT 'a\\\\'; DELETE FROM patients WHERE id = 1; --'")
        conn.execute("SET standard_conforming_strings = on")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(text)


def test_syntax_errors_are_answered_as_postgres_does_and_journaled(
        clinic: GatewayProcess) -> None:
    with connect(clinic) as conn, pytest.raises(psycopg.errors.SyntaxError) as caught:
        conn.execute("SELEC mrn FROM patients")
    diag = caught.value.diag
    assert diag.message_primary == 'syntax error at or near "SELEC"'
    assert diag.statement_position == "1"
    shown = subprocess.run([str(PHIGATE), "journal", "show", str(clinic.journal_dir),
                            "--type", "statement", "--json"], capture_output=True, text=True,
                           check=True)
    entries = [json.loads(line) for line in shown.stdout.splitlines()]
    refused = [e for e in entries if e.get("sql") == "SELEC mrn FROM patients"]
    assert refused and refused[-1]["refused"]["sqlstate"] == "42601"
