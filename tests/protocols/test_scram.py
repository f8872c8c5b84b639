"""SCRAM-SHA-256: RFC 7677 vector, server/client against each other, negotiation, SASLprep,
verifier parsing, channel-binding data and fuzzing of the server and client parsers."""

from __future__ import annotations

import ast
import base64
import datetime
import hashlib
import pathlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from protocols.postgres import scram
from protocols.postgres.scram import (
    DEFAULT_ITERATIONS,
    MAX_ITERATIONS,
    MECHANISM,
    MECHANISM_PLUS,
    ChannelBindingError,
    InvalidVerifier,
    ScramAuthenticationFailed,
    ScramClient,
    ScramError,
    ScramServer,
    make_verifier,
    mock_verifier,
    parse_verifier,
    prepare_password,
    tls_server_end_point,
)

RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
SECRET = b"0123456789abcdef-mock-secret"
# Derived once: PBKDF2 is the slow part and the exchange tests need not repeat it.
VERIFIER = parse_verifier(make_verifier("pencil"))
CB = hashlib.sha256(b"our certificate").digest()
OTHER_CB = hashlib.sha256(b"a MITM certificate").digest()


def run(server: ScramServer, client: ScramClient) -> None:
    """Drive a whole exchange; exceptions propagate from whichever side fails."""
    mechanism = client.choose(server.mechanisms())
    server_first = server.first(mechanism, client.first())
    server_final = server.final(client.final(server_first))
    client.verify(server_final)


def started(server: ScramServer, client_first: bytes = b"n,,n=,r=abc") -> ScramServer:
    server.first(MECHANISM, client_first)
    return server


# --- RFC 7677 ---------------------------------------------------------------------------


def test_rfc7677_vector() -> None:
    verifier = parse_verifier(make_verifier("pencil", salt=RFC_SALT, iterations=4096))
    server = ScramServer(verifier, nonce=RFC_SERVER_NONCE)
    client = ScramClient("pencil", username="user", nonce=RFC_CLIENT_NONCE)
    assert client.choose(server.mechanisms()) == MECHANISM
    client_first = client.first()
    assert client_first == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    server_first = server.first(MECHANISM, client_first)
    assert server_first == (
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    client_final = client.final(server_first)
    assert client_final == (
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    server_final = server.final(client_final)
    assert server_final == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    client.verify(server_final)
    assert server.succeeded and client.verified


# --- server and client together -----------------------------------------------------------


def test_success_without_tls() -> None:
    server, client = ScramServer(VERIFIER), ScramClient("pencil")
    run(server, client)
    assert server.succeeded and client.verified
    assert client.mechanism == MECHANISM


def test_client_first_looks_like_libpq() -> None:
    client = ScramClient("pencil")
    client.choose([MECHANISM])
    header, _, nonce = client.first().decode().partition("r=")
    assert header == "n,,n=,"
    assert len(nonce) == 24  # 18 random bytes, base64


def test_wrong_password() -> None:
    server = ScramServer(VERIFIER)
    with pytest.raises(ScramAuthenticationFailed) as info:
        run(server, ScramClient("pencil2"))
    assert info.value.sqlstate == "28P01"
    assert not server.succeeded


def _failed_exchange(server: ScramServer) -> tuple[bytes, str]:
    client = ScramClient("guess")
    client.choose(server.mechanisms())
    server_first = server.first(MECHANISM, client.first())
    with pytest.raises(ScramAuthenticationFailed) as info:
        server.final(client.final(server_first))
    return server_first, str(info.value)


def test_unknown_user_is_indistinguishable() -> None:
    known_first, known_error = _failed_exchange(ScramServer(VERIFIER))
    unknown = ScramServer(None, username="ghost", mock_secret=SECRET)
    unknown_first, unknown_error = _failed_exchange(unknown)
    assert unknown_error == known_error

    def shape(message: bytes) -> list[tuple[str, int]]:
        return [(item[:2], len(item)) for item in message.decode().split(",")]

    assert shape(unknown_first) == shape(known_first)
    # A second attempt for the same user sees the same salt, like a real verifier.
    again, _ = _failed_exchange(ScramServer(None, username="ghost", mock_secret=SECRET))
    assert again.split(b",")[1:] == unknown_first.split(b",")[1:]


def test_unknown_user_always_fails_at_the_end() -> None:
    server = ScramServer(None, username="ghost", mock_secret=SECRET)
    # Even if the stand-in verifier somehow matched the password, the exchange is doomed.
    server._verifier = VERIFIER
    with pytest.raises(ScramAuthenticationFailed, match="proof"):
        run(server, ScramClient("pencil"))
    assert not server.succeeded


def test_mock_verifier_depends_on_user_and_secret() -> None:
    a = mock_verifier(SECRET, "alice")
    assert a.salt == mock_verifier(SECRET, "alice").salt
    assert a.salt != mock_verifier(SECRET, "bob").salt
    assert a.salt != mock_verifier(SECRET + b"!", "alice").salt
    assert len(a.salt) == len(VERIFIER.salt) == scram.SALT_LENGTH
    assert mock_verifier(SECRET, "alice", iterations=10_000).iterations == 10_000


def test_unknown_user_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="mock_secret"):
        ScramServer(None, username="ghost")
    with pytest.raises(ValueError, match="at least"):
        ScramServer(None, username="ghost", mock_secret=b"short")


def test_tampered_proof() -> None:
    server, client = ScramServer(VERIFIER), ScramClient("pencil")
    client.choose(server.mechanisms())
    client_final = client.final(server.first(MECHANISM, client.first()))
    head, _, proof = client_final.partition(b",p=")
    flipped = bytearray(base64.b64decode(proof))
    flipped[0] ^= 1
    with pytest.raises(ScramAuthenticationFailed, match="proof"):
        server.final(head + b",p=" + base64.b64encode(bytes(flipped)))


def test_wrong_nonce_in_client_final() -> None:
    server, client = ScramServer(VERIFIER), ScramClient("pencil")
    client.choose(server.mechanisms())
    server_first = server.first(MECHANISM, client.first())
    # The client signs a nonce the server never issued.
    forged_first = server_first.replace(b",s=", b"X,s=", 1)
    with pytest.raises(ScramAuthenticationFailed, match="nonce"):
        server.final(client.final(forged_first))


def test_client_rejects_server_nonce_not_extending_its_own() -> None:
    for server_first in (b"r=other,s=QUJD,i=4096", b"r=abc,s=QUJD,i=4096"):
        client = ScramClient("pencil", nonce="abc")
        client.choose([MECHANISM])
        client.first()
        with pytest.raises(ScramAuthenticationFailed, match="nonce"):
            client.final(server_first)


def test_client_detects_impostor_server() -> None:
    server, client = ScramServer(VERIFIER), ScramClient("pencil")
    client.choose(server.mechanisms())
    server.final(client.final(server.first(MECHANISM, client.first())))
    with pytest.raises(ScramAuthenticationFailed, match="signature"):
        client.verify(b"v=" + base64.b64encode(b"\x00" * 32))
    assert not client.verified


def test_client_reports_server_error() -> None:
    client = ScramClient("pencil", nonce="abc")
    client.choose([MECHANISM])
    client.first()
    client.final(b"r=abcdef,s=QUJD,i=1")
    with pytest.raises(ScramAuthenticationFailed, match="invalid-proof"):
        client.verify(b"e=invalid-proof")


@pytest.mark.parametrize("count", [b"0", b"-1", b"01", b"x", b"", b"1e3",
                                   str(MAX_ITERATIONS + 1).encode(), b"9" * 40])
def test_client_rejects_bad_iteration_counts(count: bytes) -> None:
    client = ScramClient("pencil", nonce="abc")
    client.choose([MECHANISM])
    client.first()
    with pytest.raises(ScramError, match="iteration"):
        client.final(b"r=abcdef,s=QUJD,i=" + count)


def test_client_accepts_low_iteration_counts() -> None:
    verifier = parse_verifier(make_verifier("pencil", iterations=1))
    server, client = ScramServer(verifier), ScramClient("pencil")
    run(server, client)
    assert client.verified


def test_exchange_is_single_use() -> None:
    server = started(ScramServer(VERIFIER))
    with pytest.raises(ScramError, match="not expecting"):
        server.first(MECHANISM, b"n,,n=,r=abc")
    with pytest.raises(ScramError, match="not expecting"):
        server.final(b"c=biws,r=abc,p=AAAA")
    client = ScramClient("pencil")
    with pytest.raises(ScramError, match="choose"):
        client.first()
    client.choose([MECHANISM])
    client.first()
    with pytest.raises(ScramError, match="before first"):
        client.choose([MECHANISM])
    with pytest.raises(ScramError, match="not expecting"):
        client.verify(b"v=AAAA")


def test_failed_server_cannot_be_retried() -> None:
    server = started(ScramServer(VERIFIER))
    with pytest.raises(ScramError):
        server.final(b"garbage")
    with pytest.raises(ScramError, match="not expecting"):
        server.final(b"c=biws,r=abc,p=" + base64.b64encode(bytes(32)))


# --- channel binding negotiation ------------------------------------------------------------


def test_mechanisms() -> None:
    assert ScramServer(VERIFIER).mechanisms() == (MECHANISM,)
    assert ScramServer(VERIFIER, channel_binding=CB).mechanisms() == (MECHANISM_PLUS, MECHANISM)


def test_channel_binding_success() -> None:
    server = ScramServer(VERIFIER, channel_binding=CB)
    client = ScramClient("pencil", channel_binding=CB)
    run(server, client)
    assert client.mechanism == MECHANISM_PLUS and server.succeeded


def test_channel_binding_mismatch() -> None:
    server = ScramServer(VERIFIER, channel_binding=CB)
    client = ScramClient("pencil", channel_binding=OTHER_CB)
    with pytest.raises(ScramAuthenticationFailed, match="channel-binding data"):
        run(server, client)


def test_client_without_binding_may_use_plain_scram_over_tls() -> None:
    server, client = ScramServer(VERIFIER, channel_binding=CB), ScramClient("pencil")
    run(server, client)
    assert client.mechanism == MECHANISM


def test_downgrade_detected() -> None:
    server = ScramServer(VERIFIER, channel_binding=CB)
    client = ScramClient("pencil", channel_binding=CB)
    client.choose([MECHANISM])  # a MITM stripped -PLUS from the list
    client_first = client.first()
    assert client_first.startswith(b"y,,")
    with pytest.raises(ScramAuthenticationFailed, match="downgrade"):
        server.first(MECHANISM, client_first)


def test_y_flag_is_fine_without_tls() -> None:
    server, client = ScramServer(VERIFIER), ScramClient("pencil", channel_binding=CB)
    run(server, client)
    assert client.mechanism == MECHANISM


def test_p_flag_without_tls() -> None:
    with pytest.raises(ScramAuthenticationFailed, match="channel binding"):
        ScramServer(VERIFIER).first(MECHANISM, b"p=tls-server-end-point,,n=,r=abc")
    with pytest.raises(ScramError, match="not offered"):
        ScramServer(VERIFIER).first(MECHANISM_PLUS, b"p=tls-server-end-point,,n=,r=abc")


@pytest.mark.parametrize(("mechanism", "client_first", "match"), [
    (MECHANISM_PLUS, b"n,,n=,r=abc", "without channel binding"),
    (MECHANISM_PLUS, b"y,,n=,r=abc", "without channel binding"),
    (MECHANISM_PLUS, b"p=tls-unique,,n=,r=abc", "unsupported"),
    (MECHANISM, b"p=tls-server-end-point,,n=,r=abc", "selected SCRAM-SHA-256"),
])
def test_inconsistent_channel_binding_with_tls(mechanism: str, client_first: bytes,
                                               match: str) -> None:
    server = ScramServer(VERIFIER, channel_binding=CB)
    with pytest.raises(ScramAuthenticationFailed, match=match):
        server.first(mechanism, client_first)


@pytest.mark.parametrize("cbind", [b"n,,", b"y,,", b"p=tls-server-end-point,,", b""])
def test_c_attribute_must_repeat_gs2_header_and_data(cbind: bytes) -> None:
    server = ScramServer(VERIFIER, channel_binding=CB)
    server.first(MECHANISM_PLUS, b"p=tls-server-end-point,,n=,r=a")
    c = base64.b64encode(cbind).decode()
    with pytest.raises(ScramAuthenticationFailed, match="channel-binding data"):
        server.final(f"c={c},r=a,p={base64.b64encode(bytes(32)).decode()}".encode())


def test_plain_exchange_rejects_c_with_other_header() -> None:
    server = started(ScramServer(VERIFIER))
    with pytest.raises(ScramAuthenticationFailed, match="channel-binding data"):
        server.final(b"c=eSws,r=abc,p=" + base64.b64encode(bytes(32)))  # "y,," after "n,,"


def test_client_can_require_channel_binding() -> None:
    client = ScramClient("pencil", channel_binding=CB, require_channel_binding=True)
    with pytest.raises(ScramAuthenticationFailed, match="required"):
        client.choose([MECHANISM])
    strict = ScramClient("pencil", require_channel_binding=True)
    with pytest.raises(ScramAuthenticationFailed, match="required"):
        strict.choose([MECHANISM_PLUS, MECHANISM])


def test_client_needs_a_known_mechanism() -> None:
    with pytest.raises(ScramError, match="no supported"):
        ScramClient("pencil").choose(["SCRAM-SHA-1", "OAUTHBEARER"])
    with pytest.raises(ScramError, match="no supported"):
        ScramClient("pencil").choose([MECHANISM_PLUS])


# --- malformed messages ---------------------------------------------------------------------


@pytest.mark.parametrize("client_first", [
    b"", b"n", b"n,", b"x,,n=,r=abc", b"p,,n=,r=abc", b"p=,,n=,r=abc", b"p=a b,,n=,r=abc",
    b"n,a=admin,n=,r=abc", b"n,a=,n=,r=abc", b"n,,r=abc", b"n,,n=,r=", b"n,,n=,r=a b",
    b"n,,n=,r=abc,", b"n,,m=ext,n=,r=abc", b"n,,n=\x00,r=abc", b"n,,n=\xff,r=abc",
    b"n,,n=,x=abc", b"n,,n=,r=abc,1=x", b"n,,n=," + b"r=" + b"a" * 70_000,
])
def test_server_rejects_malformed_client_first(client_first: bytes) -> None:
    with pytest.raises(ScramError) as info:
        ScramServer(VERIFIER).first(MECHANISM, client_first)
    assert type(info.value) is ScramError
    assert info.value.sqlstate == "08P01"


def test_server_ignores_username_and_extensions() -> None:
    server = ScramServer(VERIFIER, nonce="s")
    assert server.first(MECHANISM, b"n,,n=j\xc3\xbcrgen=2C,r=abc,x=ext").startswith(b"r=abcs,")


def test_authzid_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ScramError, match="authorization identity"):
        ScramServer(VERIFIER).first(MECHANISM, b"n,a=admin,n=,r=abc")


@pytest.mark.parametrize("client_final", [
    b"", b"c=biws", b"c=biws,r=abc", b"r=abc,c=biws,p=AAAA", b"c=biws,r=abc,p=AAAA",
    b"c=biws,r=abc,p=" + base64.b64encode(bytes(31)),
    b"c=biws,r=abc,p=" + base64.b64encode(bytes(32)) + b",x=1",
    b"c=biws,r=abc,p=" + base64.b64encode(bytes(32))[:-1],
    b"c=bi!s,r=abc,p=" + base64.b64encode(bytes(32)),
    b"c=biws,r=abc,p=AAAA,p=" + base64.b64encode(bytes(32)),
])
def test_server_rejects_malformed_client_final(client_final: bytes) -> None:
    with pytest.raises(ScramError) as info:
        started(ScramServer(VERIFIER)).final(client_final)
    assert type(info.value) is ScramError


def test_server_ignores_extensions_in_client_final() -> None:
    server, client = ScramServer(VERIFIER), ScramClient("pencil")
    client.choose(server.mechanisms())
    client_final = client.final(server.first(MECHANISM, client.first()))
    head, _, proof = client_final.partition(b",p=")
    # An extension changes client-final-message-without-proof, so the proof no longer fits;
    # the point is that it parses and reaches the proof check.
    with pytest.raises(ScramAuthenticationFailed, match="proof"):
        server.final(head + b",x=ext,p=" + proof)


@pytest.mark.parametrize("server_first", [
    b"", b"r=abcdef", b"r=abcdef,s=QUJD", b"s=QUJD,r=abcdef,i=1", b"m=x,r=abcdef,s=QUJD,i=1",
    b"r=abcdef,s=,i=1", b"r=abcdef,s=QUJ,i=1", b"r=abc def,s=QUJD,i=1",
])
def test_client_rejects_malformed_server_first(server_first: bytes) -> None:
    client = ScramClient("pencil", nonce="abc")
    client.choose([MECHANISM])
    client.first()
    with pytest.raises(ScramError):
        client.final(server_first)


@pytest.mark.parametrize("server_final", [b"", b"x=1", b"v=", b"v=!!!!", b"v"])
def test_client_rejects_malformed_server_final(server_final: bytes) -> None:
    server, client = ScramServer(VERIFIER), ScramClient("pencil")
    client.choose(server.mechanisms())
    server.final(client.final(server.first(MECHANISM, client.first())))
    with pytest.raises(ScramError):
        client.verify(server_final)


def test_injected_nonce_must_be_printable() -> None:
    with pytest.raises(ScramError, match="printable"):
        ScramServer(VERIFIER, nonce="a,b")
    with pytest.raises(ScramError, match="printable"):
        ScramClient("pencil", nonce="")


# --- verifiers ------------------------------------------------------------------------------


def test_make_verifier_format() -> None:
    text = make_verifier("pencil")
    mechanism, params, keys = text.split("$")
    assert mechanism == "SCRAM-SHA-256"
    count, salt = params.split(":")
    assert count == str(DEFAULT_ITERATIONS) and len(base64.b64decode(salt)) == 16
    assert [len(base64.b64decode(k)) for k in keys.split(":")] == [32, 32]
    assert make_verifier("pencil") != text  # fresh salt each time
    assert parse_verifier(text).to_text() == text


def test_verifier_repr_is_masked() -> None:
    text = make_verifier("pencil", salt=RFC_SALT)
    verifier = parse_verifier(text)
    for shown in (repr(verifier), str(verifier), f"{verifier}"):
        assert "masked" in shown
        for part in text.replace("$", ":").split(":")[2:]:  # salt, StoredKey, ServerKey
            assert part not in shown


def test_secret_holders_do_not_leak_in_repr() -> None:
    client = ScramClient("hunter2")
    assert "hunter2" not in repr(client)
    assert "hunter2" not in repr(ScramServer(parse_verifier(make_verifier("hunter2"))))


@pytest.mark.parametrize("text", [
    "", "SCRAM-SHA-256", "md5abcdef0123456789abcdef01234567",
    "SCRAM-SHA-1$4096:QUJD$" + "A" * 43 + "=:" + "A" * 43 + "=",
    "SCRAM-SHA-256$4096:QUJD$" + "A" * 43 + "=",
    "SCRAM-SHA-256$4096QUJD$" + "A" * 43 + "=:" + "A" * 43 + "=",
    "SCRAM-SHA-256$0:QUJD$" + "A" * 43 + "=:" + "A" * 43 + "=",
    "SCRAM-SHA-256$-1:QUJD$" + "A" * 43 + "=:" + "A" * 43 + "=",
    "SCRAM-SHA-256$ 4096:QUJD$" + "A" * 43 + "=:" + "A" * 43 + "=",
    f"SCRAM-SHA-256${MAX_ITERATIONS + 1}:QUJD$" + "A" * 43 + "=:" + "A" * 43 + "=",
    "SCRAM-SHA-256$4096:$" + "A" * 43 + "=:" + "A" * 43 + "=",
    "SCRAM-SHA-256$4096:QUJ$" + "A" * 43 + "=:" + "A" * 43 + "=",
    "SCRAM-SHA-256$4096:QUJD$" + "A" * 40 + ":" + "A" * 43 + "=",
    "SCRAM-SHA-256$4096:QUJD$" + "A" * 43 + "=:" + "A" * 43 + "=$extra",
])
def test_parse_verifier_rejects(text: str) -> None:
    with pytest.raises(InvalidVerifier) as info:
        parse_verifier(text)
    assert "A" * 40 not in str(info.value)  # never echo key material
    assert isinstance(info.value, ValueError)


def test_make_verifier_validates_parameters() -> None:
    with pytest.raises(InvalidVerifier, match="iteration"):
        make_verifier("pencil", iterations=0)
    with pytest.raises(InvalidVerifier, match="iteration"):
        make_verifier("pencil", iterations=MAX_ITERATIONS + 1)
    with pytest.raises(InvalidVerifier, match="salt"):
        make_verifier("pencil", salt=b"")


# --- SASLprep -------------------------------------------------------------------------------


@pytest.mark.parametrize(("password", "prepared"), [
    ("pencil", b"pencil"),
    ("a\x07b", b"a\x07b"),  # pure ASCII: PostgreSQL skips SASLprep, controls and all
    ("pass\u00a0word", b"pass word"),  # C.1.2 non-ASCII spaces map to U+0020
    ("pass\u2003wörd", "pass wörd".encode()),
    ("pass\u3000word", b"pass word"),
    ("I\u00adX", b"IX"),  # B.1 soft hyphen maps to nothing (RFC 4013 example)
    ("\u00aa", b"a"),  # NFKC (RFC 4013 example)
    ("\u2168", b"IX"),  # NFKC (RFC 4013 example)
    ("\ufb01x", b"fix"),
    ("\u0627\u0628", "\u0627\u0628".encode()),  # all RandALCat: fine
])
def test_prepare_password(password: str, prepared: bytes) -> None:
    assert prepare_password(password) == prepared


@pytest.mark.parametrize("password", [
    "\u00e9\x07",  # C.2.1 control inside a non-ASCII string
    "\u00e9\ue000",  # C.3 private use
    "\u00e9\ufffe",  # C.4 non-character
    "\u00e9\u200e",  # C.8 left-to-right mark
    "\u00e9\U000e0041",  # C.9 tag
    "\u00e9\u0221",  # A.1: unassigned in Unicode 3.2
    "\u0627\u0031",  # RandALCat not last (RFC 4013 example)
    "\u0627a\u0628",  # RandALCat together with LCat
    "\u00ad",  # maps to nothing: PostgreSQL refuses an empty result
])
def test_prohibited_passwords_fall_back_to_raw_utf8(password: str) -> None:
    assert prepare_password(password) == password.encode("utf-8")


def test_equivalent_passwords_make_equal_verifiers() -> None:
    salt = b"0123456789abcdef"
    assert make_verifier("pass\u00a0word", salt=salt) == make_verifier("pass word", salt=salt)
    server = ScramServer(parse_verifier(make_verifier("\u2168", salt=salt)))
    run(server, ScramClient("IX"))


# --- tls-server-end-point -------------------------------------------------------------------


def _certificate(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
                 | rsa.RSAPrivateKey,
                 algorithm: hashes.HashAlgorithm | None) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "phigate-test")])
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, algorithm)
    )
    return cert.public_bytes(Encoding.DER)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.mark.parametrize(("algorithm", "expected"), [
    (hashes.SHA256(), "sha256"), (hashes.SHA384(), "sha384"), (hashes.SHA512(), "sha512"),
])
def test_tls_server_end_point_uses_signature_hash(ec_key: ec.EllipticCurvePrivateKey,
                                                  algorithm: hashes.HashAlgorithm,
                                                  expected: str) -> None:
    der = _certificate(ec_key, algorithm)
    assert tls_server_end_point(der) == hashlib.new(expected, der).digest()


# cryptography no longer signs with MD5 or SHA-1, so take an RSA/SHA-256 certificate and
# rewrite its algorithm OIDs; the OIDs have the same length and nobody checks the signature.
_SHA256_WITH_RSA = bytes.fromhex("2a864886f70d01010b")  # 1.2.840.113549.1.1.11


@pytest.mark.parametrize("last_arc", [0x04, 0x05])  # md5WithRSA, sha1WithRSA
def test_tls_server_end_point_upgrades_md5_and_sha1(last_arc: int) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    original = _certificate(key, hashes.SHA256())
    assert original.count(_SHA256_WITH_RSA) == 2
    der = original.replace(_SHA256_WITH_RSA, _SHA256_WITH_RSA[:-1] + bytes([last_arc]))
    weak = {0x04: hashes.MD5, 0x05: hashes.SHA1}[last_arc]
    assert isinstance(x509.load_der_x509_certificate(der).signature_hash_algorithm, weak)
    assert tls_server_end_point(der) == hashlib.sha256(der).digest()


def test_tls_server_end_point_refuses_ed25519() -> None:
    der = _certificate(ed25519.Ed25519PrivateKey.generate(), None)
    with pytest.raises(ChannelBindingError, match="Ed25519"):
        tls_server_end_point(der)


def test_tls_server_end_point_refuses_garbage() -> None:
    with pytest.raises(ChannelBindingError, match="DER"):
        tls_server_end_point(b"not a certificate")


def test_end_to_end_with_real_binding_data(ec_key: ec.EllipticCurvePrivateKey) -> None:
    cb = tls_server_end_point(_certificate(ec_key, hashes.SHA256()))
    server = ScramServer(VERIFIER, channel_binding=cb)
    client = ScramClient("pencil", channel_binding=cb)
    run(server, client)
    assert client.mechanism == MECHANISM_PLUS


# --- fuzzing --------------------------------------------------------------------------------

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
_attr = st.sampled_from(["n", "y", "p", "a", "c", "r", "p=tls-server-end-point", "m", "x", "v"])
_text = st.lists(
    st.one_of(_attr, st.text(max_size=8), st.sampled_from([",", "=", ",,", "r=", "p="])),
    max_size=12,
).map("".join)

_b64 = st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode())
_structured_first = st.builds(
    "{},{},{}n={},r={}{}".format,
    st.sampled_from(["n", "y", "p=tls-server-end-point", "p=tls-unique", "p=", "q"]),
    st.sampled_from(["", "a=x", "a="]), st.sampled_from(["", "m=x,"]), st.text(max_size=6),
    st.text(max_size=6), st.sampled_from(["", ",x=1", ",", ",=="]),
).map(str.encode)
_structured_final = st.builds(
    "c={},r={}{},p={}".format,
    st.one_of(_b64, st.just("biws"), st.just("eSws")), st.text(max_size=6),
    st.sampled_from(["", ",x=1", ",p=AAAA", ",,"]),
    st.one_of(_b64, st.binary(min_size=32, max_size=32).map(
        lambda b: base64.b64encode(b).decode())),
).map(str.encode)


@FUZZ
@given(mechanism=st.sampled_from([MECHANISM, MECHANISM_PLUS, "", "x"]),
       data=st.one_of(st.binary(max_size=200), _text.map(str.encode), _structured_first))
@example(mechanism=MECHANISM_PLUS, data=b"p=tls-server-end-point,,n=,r=a")
def test_fuzz_server_first(mechanism: str, data: bytes) -> None:
    server = ScramServer(None, username="fuzz", mock_secret=SECRET, channel_binding=CB)
    try:
        server.first(mechanism, data)
    except ScramError:
        pass


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), _text.map(str.encode), _structured_final))
@example(data=b"c=biws,r=abc,p=" + base64.b64encode(bytes(32)))
@example(data=b"c=,r=,p=")
@example(data="c=biws,r=\u00e9,p=".encode() + base64.b64encode(bytes(32)))
def test_fuzz_server_final(data: bytes) -> None:
    server = started(ScramServer(VERIFIER))
    with pytest.raises(ScramError):  # nothing random can carry a valid proof
        server.final(data)


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), _text.map(lambda t: ("r=abc" + t).encode())))
def test_fuzz_client_final(data: bytes) -> None:
    client = ScramClient("pencil", nonce="abc")
    client.choose([MECHANISM])
    client.first()
    try:
        client.final(data)
    except ScramError:
        pass


# --- layering -------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [scram.__file__, pathlib.Path(scram.__file__).with_name(
    "md5.py")])
def test_no_io_imports(module: str) -> None:
    tree = ast.parse(pathlib.Path(module).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert not imported & {"asyncio", "socket", "ssl", "selectors", "gateway", "policies"}
