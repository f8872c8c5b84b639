"""Fast-path FunctionCall end to end (issue 17): psql's large objects, decided and journaled.

Real psql ``\\lo_import``/``\\lo_export``/``\\lo_unlink`` (libpq's fast-path calls) in and out
of transactions, and raw FunctionCall messages: every call is answered exactly as PostgreSQL
answers it (FunctionCallResponse or ErrorResponse, then ReadyForQuery with the right
transaction status), decided by policy by the function's OID, journaled with its function name
and digested arguments. asyncpg and psycopg 3 have no large-object API; pg8000 neither.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from protocols.postgres import messages as m
from protocols.postgres.decoder import decode_backend
from protocols.postgres.encoder import encode
from protocols.postgres.framing import FrameBuffer
from tests.e2e.harness import GatewayProcess, psql
from tests.e2e.test_journal_e2e import entries
from tests.e2e.test_robustness import _authenticated_socket

LO_IMPORT_SERVER = 764  # lo_import(text): a server-side file read
LO_CREAT = 957  # lo_creat(integer)
READ_ONLY = """\
phi_tables: [clinic.pg_catalog.pg_largeobject]
rules:
  - name: readers
    allow: [select, transaction, session]
"""


def until_ready(sock: socket.socket, buffer: FrameBuffer) -> list[object]:
    """Messages up to and including ReadyForQuery; a hang fails on the socket timeout."""
    out: list[object] = []
    while True:
        while (frame := buffer.next_frame()) is None:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {out}"
            buffer.feed(chunk)
        message = decode_backend(frame)
        out.append(message)
        if isinstance(message, m.ReadyForQuery):
            return out


def call(oid: int, *args: bytes) -> bytes:
    return encode(m.FunctionCall(function_oid=oid, arg_formats=(1,), args=args,
                                 result_format=1))


def test_psql_large_objects_round_trip_in_and_out_of_transactions(
        start_gateway: Callable[..., GatewayProcess], tmp_path: Path) -> None:
    gateway = start_gateway()
    source = tmp_path / "in.txt"
    source.write_bytes(b"x\n" + bytes(range(256)) * 300)
    imported = psql(gateway, user="bob", stdin=f"\\lo_import {source}\n", timeout=20)
    assert imported.returncode == 0, imported.stderr
    oid = int(imported.stdout.split()[-1])
    script = (f"begin;\n\\lo_import {source}\n\\lo_export {oid} {tmp_path / 'out.txt'}\n"
              f"commit;\n\\lo_unlink {oid}\nSELECT 'still here';\n")
    inside = psql(gateway, user="bob", stdin=script, timeout=20)
    assert inside.returncode == 0, inside.stderr
    assert (tmp_path / "out.txt").read_bytes() == source.read_bytes()
    assert inside.stdout.splitlines()[-1] == "still here"
    second = int(inside.stdout.split("lo_import ")[1].split()[0])
    assert psql(gateway, user="bob", stdin=f"\\lo_unlink {second}\n").returncode == 0
    assert gateway.stop() == 0

    calls = [s for s in entries(gateway, "--type", "statement") if s["protocol"] == "function"]
    names = {s["function"] for s in calls}
    assert {"pg_catalog.lo_open", "pg_catalog.lowrite", "pg_catalog.loread",
            "pg_catalog.lo_close", "pg_catalog.lo_unlink"} <= names
    assert all(s["sql"].startswith("SELECT pg_catalog.lo") for s in calls)
    assert all(s["decision"] == "allow" for s in calls)
    writes = [s for s in calls if s["function"] == "pg_catalog.lowrite"]
    assert writes and all(isinstance(p, str) and len(p) > 20 for p in writes[0]["parameters"])
    outcomes = {(o["session"], o["n"]): o for o in entries(gateway, "--type", "outcome")}
    reads = [outcomes[s["session"], s["n"]] for s in calls
             if s["function"] == "pg_catalog.loread"]
    assert sum(o["bytes"] for o in reads) > source.stat().st_size
    assert all(o["rows"] == 1 and o["sqlstate"] is None for o in reads)


def test_refused_calls_are_answered_like_postgres_errors(
        start_gateway: Callable[..., GatewayProcess], tmp_path: Path) -> None:
    policy = tmp_path / "read-only.yaml"
    policy.write_text(READ_ONLY, encoding="utf-8")
    gateway = start_gateway({"policies": [str(policy)]})
    source = tmp_path / "in.txt"
    source.write_text("x\n", encoding="utf-8")
    refused = psql(gateway, user="bob", stdin=f"\\lo_import {source}\n", timeout=20)
    assert refused.returncode != 0 and "phigate: rule default-deny" in refused.stderr
    in_tx = psql(gateway, user="bob", args=("-v", "ON_ERROR_STOP=0"), timeout=20,
                 stdin=f"begin;\n\\lo_import {source}\nSELECT 1;\nrollback;\nSELECT 'after';\n")
    assert "current transaction is aborted" in in_tx.stderr, in_tx.stderr
    assert in_tx.stdout.splitlines()[-1] == "after"


@pytest.mark.parametrize(("oid", "sqlstate", "words"), [
    (LO_IMPORT_SERVER, "42501", "dangerous"),  # server-side file read, even for allow-all
    (4_000_000_000, "42501", "does not list"),  # no such function
])
def test_raw_calls_get_error_then_ready(start_gateway: Callable[..., GatewayProcess],
                                        tmp_path: Path, oid: int, sqlstate: str,
                                        words: str) -> None:
    policy = tmp_path / "no-dangerous.yaml"
    policy.write_text("rules:\n  - name: all\n    allow: [all]\n", encoding="utf-8")
    gateway = start_gateway({"policies": [str(policy)]})
    with _authenticated_socket(gateway) as sock:
        buffer = FrameBuffer()
        sock.sendall(call(oid, b"/etc/hostname"))
        answer = until_ready(sock, buffer)
        assert [type(x) for x in answer] == [m.ErrorResponse, m.ReadyForQuery]
        error, ready = answer
        assert isinstance(error, m.ErrorResponse) and error.sqlstate == sqlstate
        assert words in error.message and isinstance(ready, m.ReadyForQuery)
        assert ready.status == "I"
        # In a transaction the refusal aborts it, as a failing call would.
        sock.sendall(encode(m.Query(sql="BEGIN")))
        until_ready(sock, buffer)
        sock.sendall(call(oid, b"/etc/hostname"))
        *_, ready = until_ready(sock, buffer)
        assert isinstance(ready, m.ReadyForQuery) and ready.status == "E"
        sock.sendall(encode(m.Query(sql="ROLLBACK")))
        until_ready(sock, buffer)
        # An allowed call answers with FunctionCallResponse then ReadyForQuery.
        sock.sendall(call(LO_CREAT, struct.pack("!i", -1)))
        answer = until_ready(sock, buffer)
        assert [type(x) for x in answer] == [m.FunctionCallResponse, m.ReadyForQuery]
        created = answer[0]
        assert isinstance(created, m.FunctionCallResponse) and created.result is not None
        (oid_created,) = struct.unpack("!I", created.result)
        sock.sendall(encode(m.Query(sql=f"SELECT lo_unlink({oid_created})")))
        assert not any(isinstance(x, m.ErrorResponse) for x in until_ready(sock, buffer))


def test_loread_counts_toward_the_hourly_phi_row_budget(
        start_gateway: Callable[..., GatewayProcess], tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_bytes(bytes(range(256)) * 200)  # 51 200 bytes: psql reads 8 KiB per loread
    writer = start_gateway(name="writer")
    oid = int(psql(writer, user="bob", stdin=f"\\lo_import {source}\n").stdout.split()[-1])
    policy = tmp_path / "budget.yaml"
    policy.write_text(READ_ONLY.replace("session]", "session]\n    max_phi_rows_per_hour: 3"),
                      encoding="utf-8")
    reader = start_gateway({"policies": [str(policy)]}, name="reader")
    try:
        export = psql(reader, user="bob", stdin=f"\\lo_export {oid} {tmp_path / 'out'}\n",
                      timeout=20)
        assert export.returncode != 0 and "PHI row budget" in export.stderr, export.stderr
    finally:
        psql(writer, user="bob", stdin=f"\\lo_unlink {oid}\n")
    assert reader.stop() == 0
    reads = [o for o in entries(reader, "--type", "outcome") if o["bytes"] > 8192]
    assert len(reads) == 3  # three loreads of 8 KiB, then the budget refused the fourth
