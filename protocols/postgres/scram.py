"""SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, without any I/O.

Owns the stored verifier format, the server
side of the exchange (the gateway authenticating its clients), the client side (the gateway
authenticating itself to an upstream PostgreSQL) and tls-server-end-point channel-binding data
(RFC 5929).

Driven by ``gateway/proxy/auth.py``, which carries these bytes in AuthenticationSASL* /
SASLInitialResponse / SASLResponse messages and turns the exceptions into ErrorResponses using
their ``sqlstate``. Each ScramServer or ScramClient runs exactly one exchange; any failure ends
it. Key derivation (PBKDF2) costs milliseconds of CPU per call: callers on an event loop should
run ``make_verifier`` and ``ScramClient.final`` in an executor.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

from .saslprep import prepare_password

MECHANISM = "SCRAM-SHA-256"
MECHANISM_PLUS = "SCRAM-SHA-256-PLUS"
CHANNEL_BINDING_TYPE = "tls-server-end-point"

# PostgreSQL's defaults (scram_iterations, SCRAM_DEFAULT_SALT_LEN, SCRAM_RAW_NONCE_LEN).
DEFAULT_ITERATIONS = 4096
SALT_LENGTH = 16
NONCE_BYTES = 18
KEY_LENGTH = 32  # SHA-256 output
# PostgreSQL lets administrators configure fewer than 4096 iterations, so we accept any positive
# count; but each iteration is CPU we spend on the peer's say-so, and a hostile upstream (or a
# tampered verifier) could otherwise pin a core for minutes. Ten million is about 100 times
# anything deployed today and still finishes in seconds.
MAX_ITERATIONS = 10_000_000
# PostgreSQL refuses SASL messages longer than PG_MAX_AUTH_TOKEN_LENGTH; so do we, which also
# bounds the AuthMessage we hash.
MAX_MESSAGE_SIZE = 65_535
# The unknown-user disguise is only as good as its secret.
MIN_MOCK_SECRET = 16

_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_PRINTABLE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # RFC 5802 "printable": ASCII minus ","
_CB_NAME = re.compile(r"[A-Za-z0-9.-]+")
_COUNT = re.compile(r"[1-9][0-9]{0,9}")
# Every ScramAuthenticationFailed for a bad proof says exactly this, known user or not.
_PROOF_FAILED = "SCRAM proof does not match"


class ScramError(Exception):
    """A SCRAM message is malformed, or the exchange was driven out of order."""

    sqlstate = "08P01"  # protocol_violation


class ScramAuthenticationFailed(ScramError):
    """The peer failed to prove itself: wrong proof, signature, nonce or channel binding."""

    sqlstate = "28P01"  # invalid_password


class InvalidVerifier(ValueError):
    """A SCRAM verifier is not in PostgreSQL's ``SCRAM-SHA-256$…`` format."""


class ChannelBindingError(ValueError):
    """No tls-server-end-point channel-binding data can be derived from a certificate."""


# --- verifiers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class ScramVerifier:
    """What the server stores instead of a password. ``repr`` never shows the keys."""

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    def __post_init__(self) -> None:
        if not 1 <= self.iterations <= MAX_ITERATIONS:
            raise InvalidVerifier(f"iteration count must be between 1 and {MAX_ITERATIONS}")
        if not self.salt:
            raise InvalidVerifier("salt must not be empty")
        if len(self.stored_key) != KEY_LENGTH or len(self.server_key) != KEY_LENGTH:
            raise InvalidVerifier(f"StoredKey and ServerKey must be {KEY_LENGTH} bytes each")

    def __repr__(self) -> str:
        return (f"ScramVerifier(iterations={self.iterations}, "
                f"salt=<{len(self.salt)} bytes>, keys=<masked>)")

    def to_text(self) -> str:
        """PostgreSQL's rolpassword form: ``SCRAM-SHA-256$iter:salt$StoredKey:ServerKey``."""
        return (
            f"{MECHANISM}${self.iterations}:{_b64(self.salt)}"
            f"${_b64(self.stored_key)}:{_b64(self.server_key)}"
        )


def make_verifier(password: str, *, salt: bytes | None = None,
                  iterations: int = DEFAULT_ITERATIONS) -> str:
    """Derive a verifier in PostgreSQL's format; a random 16-byte salt unless one is given."""
    salt = secrets.token_bytes(SALT_LENGTH) if salt is None else salt
    # Validate before PBKDF2 so a silly iteration count fails fast instead of burning CPU.
    ScramVerifier(iterations, salt, bytes(KEY_LENGTH), bytes(KEY_LENGTH))
    _, stored_key, server_key = _derive_keys(prepare_password(password), salt, iterations)
    return ScramVerifier(iterations, salt, stored_key, server_key).to_text()


def parse_verifier(text: str) -> ScramVerifier:
    """Parse a ``SCRAM-SHA-256$…`` verifier. Error messages never echo the (secret) text."""
    mechanism, sep1, rest = text.partition("$")
    params, sep2, keys = rest.partition("$")
    count, sep3, salt_b64 = params.partition(":")
    stored_b64, sep4, server_b64 = keys.partition(":")
    if mechanism != MECHANISM or not (sep1 and sep2 and sep3 and sep4):
        raise InvalidVerifier("not a SCRAM-SHA-256 verifier (want SCRAM-SHA-256$i:salt$key:key)")
    if not _COUNT.fullmatch(count):
        raise InvalidVerifier("iteration count is not a positive decimal number")
    salt, stored_key, server_key = (_b64decode(p) for p in (salt_b64, stored_b64, server_b64))
    if salt is None or stored_key is None or server_key is None:
        raise InvalidVerifier("salt or keys are not valid base64")
    return ScramVerifier(int(count), salt, stored_key, server_key)


def check_password(verifier: ScramVerifier, password: str) -> bool:
    """Whether ``password`` derives ``verifier``'s StoredKey (compared in constant time).

    For logins that type a password (the web console) rather than run a SCRAM exchange; the
    PBKDF2 cost is the verifier's own iteration count, so it is as slow as a SCRAM login.
    """
    _, stored_key, _ = _derive_keys(prepare_password(password), verifier.salt,
                                    verifier.iterations)
    return hmac.compare_digest(stored_key, verifier.stored_key)


def mock_verifier(secret: bytes, username: str, *,
                  iterations: int = DEFAULT_ITERATIONS) -> ScramVerifier:
    """A stable stand-in verifier for a user who does not exist (or has no SCRAM verifier).

    Same salt for the same user on every attempt, so repeated probes cannot tell it from a
    real one; ``iterations`` must match what real verifiers use, or the count gives it away.
    """
    if len(secret) < MIN_MOCK_SECRET:
        raise ValueError(f"mock secret must be at least {MIN_MOCK_SECRET} bytes")
    user = username.encode("utf-8", "surrogatepass")

    def derive(label: bytes) -> bytes:
        return hmac.digest(secret, label + b"\x00" + user, "sha256")

    salt = derive(b"phigate-scram-mock-salt")[:SALT_LENGTH]
    return ScramVerifier(iterations, salt, derive(b"phigate-scram-mock-stored-key"),
                         derive(b"phigate-scram-mock-server-key"))


def _derive_keys(password: bytes, salt: bytes, iterations: int) -> tuple[bytes, bytes, bytes]:
    """(ClientKey, StoredKey, ServerKey) per RFC 5802 section 3."""
    salted = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    return client_key, hashlib.sha256(client_key).digest(), _hmac(salted, b"Server Key")


# --- the exchange ---------------------------------------------------------------------------


class _Phase(enum.Enum):
    START = "start"
    FIRST_DONE = "first message done"
    FINAL_DONE = "final message done"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class _Gs2:
    flag: str  # "n", "y" or "p"
    cb_name: str | None
    header: str  # exactly as sent, e.g. "n,,"


class ScramServer:
    """Server side of one SCRAM exchange: the gateway checking a client's password.

    ``verifier`` None means the user is unknown: the exchange then runs identically on
    :func:`mock_verifier` (``mock_secret`` + ``username``) and always fails at the proof, with
    the same exception and message as a wrong password. ``channel_binding`` is the
    tls-server-end-point hash of our certificate when the client connection uses TLS.
    """

    __slots__ = ("_verifier", "_doomed", "_cb_data", "_server_nonce", "_phase",
                 "_gs2", "_client_first_bare", "_server_first", "_nonce")

    def __init__(self, verifier: ScramVerifier | None, *, username: str = "",
                 mock_secret: bytes | None = None, mock_iterations: int = DEFAULT_ITERATIONS,
                 channel_binding: bytes | None = None, nonce: str | None = None) -> None:
        self._doomed = verifier is None  # whatever the proof, this exchange fails
        if verifier is None:
            if mock_secret is None:
                raise ValueError("an unknown user (verifier None) needs mock_secret")
            verifier = mock_verifier(mock_secret, username, iterations=mock_iterations)
        self._verifier = verifier
        self._cb_data = channel_binding
        self._server_nonce = _check_nonce(nonce) if nonce is not None else _new_nonce()
        self._phase = _Phase.START
        self._gs2 = _Gs2("n", None, "n,,")
        self._client_first_bare = self._server_first = self._nonce = ""

    def __repr__(self) -> str:
        return f"ScramServer(phase={self._phase.value!r}, mechanisms={self.mechanisms()!r})"

    @property
    def succeeded(self) -> bool:
        """True once :meth:`final` has accepted the client's proof."""
        return self._phase is _Phase.DONE

    def mechanisms(self) -> tuple[str, ...]:
        """The SASL mechanisms to offer in AuthenticationSASL, best first."""
        if self._cb_data is not None:
            return (MECHANISM_PLUS, MECHANISM)
        return (MECHANISM,)

    def first(self, mechanism: str, client_first: bytes) -> bytes:
        """Take the client-first-message (SASLInitialResponse); return the server-first."""
        _advance(self, _Phase.START)
        if mechanism not in self.mechanisms():
            raise ScramError("client selected a SASL mechanism that was not offered")
        gs2, bare = _split_gs2(_decode(client_first, "client-first-message"))
        self._check_gs2(gs2, mechanism == MECHANISM_PLUS)
        client_nonce = _parse_client_first_bare(bare)
        self._gs2, self._client_first_bare = gs2, bare
        self._nonce = client_nonce + self._server_nonce
        v = self._verifier
        self._server_first = f"r={self._nonce},s={_b64(v.salt)},i={v.iterations}"
        self._phase = _Phase.FIRST_DONE
        return self._server_first.encode("ascii")

    def final(self, client_final: bytes) -> bytes:
        """Take the client-final-message (SASLResponse); return the server-final ``v=…``."""
        _advance(self, _Phase.FIRST_DONE)
        text = _decode(client_final, "client-final-message")
        cbind, nonce, proof, without_proof = _parse_client_final(text)
        expected = self._gs2.header.encode("ascii")
        if self._gs2.flag == "p" and self._cb_data is not None:
            expected += self._cb_data
        if not hmac.compare_digest(cbind, expected):
            raise ScramAuthenticationFailed("SCRAM channel-binding data does not match")
        if not hmac.compare_digest(nonce.encode(), self._nonce.encode()):
            raise ScramAuthenticationFailed("SCRAM nonce does not match")
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}"
        server_signature = self._check_proof(auth_message.encode("utf-8"), proof)
        self._phase = _Phase.DONE
        return b"v=" + _b64(server_signature).encode("ascii")

    def _check_gs2(self, gs2: _Gs2, plus: bool) -> None:
        """Enforce RFC 5802 section 6 and RFC 5929 channel-binding negotiation."""
        if gs2.flag == "p":
            if gs2.cb_name != CHANNEL_BINDING_TYPE:
                raise ScramAuthenticationFailed("unsupported SCRAM channel-binding type")
            if not plus:
                raise ScramAuthenticationFailed(
                    f"client sent channel binding but selected {MECHANISM}")
        elif plus:
            raise ScramAuthenticationFailed(
                f"client selected {MECHANISM_PLUS} without channel binding")
        elif gs2.flag == "y" and self._cb_data is not None:
            # The client can bind but believes we cannot: someone removed -PLUS in transit.
            raise ScramAuthenticationFailed("SCRAM channel-binding downgrade detected")

    def _check_proof(self, auth_message: bytes, proof: bytes) -> bytes:
        """Verify ClientProof in constant time; return ServerSignature."""
        v = self._verifier
        client_key = _xor(proof, _hmac(v.stored_key, auth_message))
        ok = hmac.compare_digest(hashlib.sha256(client_key).digest(), v.stored_key)
        server_signature = _hmac(v.server_key, auth_message)
        if not ok or self._doomed:
            raise ScramAuthenticationFailed(_PROOF_FAILED)
        return server_signature


class ScramClient:
    """Client side of one SCRAM exchange: the gateway logging in to an upstream PostgreSQL.

    Call :meth:`choose` with the server's mechanisms, then :meth:`first`, :meth:`final` and
    :meth:`verify`. Only after :meth:`verify` (``verified``) has the server proved it knows the
    password; an AuthenticationOk before then must be treated as a failure.
    """

    __slots__ = ("_password", "_cb_data", "_require_cb", "_username", "_nonce", "_mechanism",
                 "_phase", "_client_first_bare", "_server_signature")

    def __init__(self, password: str, *, channel_binding: bytes | None = None,
                 require_channel_binding: bool = False, username: str = "",
                 nonce: str | None = None) -> None:
        self._password = password
        self._cb_data = channel_binding
        self._require_cb = require_channel_binding
        self._username = username  # PostgreSQL ignores it; libpq sends ""
        self._nonce = _check_nonce(nonce) if nonce is not None else _new_nonce()
        self._mechanism: str | None = None
        self._phase = _Phase.START
        self._client_first_bare = ""
        self._server_signature = b""

    def __repr__(self) -> str:
        return f"ScramClient(mechanism={self._mechanism!r}, phase={self._phase.value!r})"

    @property
    def mechanism(self) -> str | None:
        return self._mechanism

    @property
    def verified(self) -> bool:
        """True once the server's signature has been checked (mutual authentication)."""
        return self._phase is _Phase.DONE

    def choose(self, mechanisms: Iterable[str]) -> str:
        """Pick from the server's AuthenticationSASL list; PLUS when we have binding data."""
        if self._phase is not _Phase.START:
            raise ScramError("choose() must come before first()")
        offered = set(mechanisms)
        if self._cb_data is not None and MECHANISM_PLUS in offered:
            self._mechanism = MECHANISM_PLUS
        elif self._require_cb:
            raise ScramAuthenticationFailed(
                f"channel binding required: needs TLS binding data and {MECHANISM_PLUS}")
        elif MECHANISM in offered:
            self._mechanism = MECHANISM
        else:
            raise ScramError(f"server offers no supported SASL mechanism ({MECHANISM} needed)")
        return self._mechanism

    def first(self) -> bytes:
        """The client-first-message, to send in SASLInitialResponse."""
        if self._mechanism is None:
            raise ScramError("choose() a mechanism before first()")
        _advance(self, _Phase.START)
        self._client_first_bare = f"n={_saslname(self._username)},r={self._nonce}"
        self._phase = _Phase.FIRST_DONE
        return (self._gs2_header() + self._client_first_bare).encode("utf-8")

    def final(self, server_first: bytes) -> bytes:
        """Take the server-first-message; return the client-final-message with our proof."""
        _advance(self, _Phase.FIRST_DONE)
        text = _decode(server_first, "server-first-message")
        nonce, salt, iterations = _parse_server_first(text, self._nonce)
        client_key, stored_key, server_key = _derive_keys(
            prepare_password(self._password), salt, iterations)
        cbind = self._gs2_header().encode("ascii")
        if self._mechanism == MECHANISM_PLUS and self._cb_data is not None:
            cbind += self._cb_data
        without_proof = f"c={_b64(cbind)},r={nonce}"
        auth = f"{self._client_first_bare},{text},{without_proof}".encode()
        proof = _xor(client_key, _hmac(stored_key, auth))
        self._server_signature = _hmac(server_key, auth)
        self._phase = _Phase.FINAL_DONE
        return f"{without_proof},p={_b64(proof)}".encode("ascii")

    def verify(self, server_final: bytes) -> None:
        """Check the server-final-message (AuthenticationSASLFinal); raise unless it proves
        the server holds our verifier."""
        _advance(self, _Phase.FINAL_DONE)
        attrs = _attributes(_decode(server_final, "server-final-message"), "server-final-message")
        name, value = attrs[0]
        if name == "e":
            raise ScramAuthenticationFailed(f"server rejected SCRAM exchange: {value[:64]!r}")
        signature = _b64decode(value) if name == "v" else None
        if signature is None:
            raise ScramError("malformed server-final-message: v= expected")
        if not hmac.compare_digest(signature, self._server_signature):
            raise ScramAuthenticationFailed("server signature does not match: not our server")
        self._phase = _Phase.DONE

    def _gs2_header(self) -> str:
        if self._mechanism == MECHANISM_PLUS:
            return f"p={CHANNEL_BINDING_TYPE},,"
        return "y,," if self._cb_data is not None else "n,,"


# --- channel binding ------------------------------------------------------------------------


def tls_server_end_point(cert_der: bytes) -> bytes:
    """RFC 5929 tls-server-end-point data: the DER certificate hashed with its signature hash.

    MD5 and SHA-1 are replaced by SHA-256, as the RFC requires. Certificates signed without a
    separate hash (Ed25519, Ed448) have no defined binding; PostgreSQL fails there too.
    """
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError as e:
        raise ChannelBindingError("not a DER-encoded X.509 certificate") from e
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm as e:
        raise ChannelBindingError("certificate signature hash algorithm is not supported") from e
    if algorithm is None:
        raise ChannelBindingError(
            "certificate signature algorithm has no hash (e.g. Ed25519/Ed448): "
            "tls-server-end-point channel binding is undefined; use an RSA or ECDSA certificate")
    if isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(cert_der)
    return digest.finalize()


# --- message parsing ------------------------------------------------------------------------


def _advance(exchange: ScramServer | ScramClient, expected: _Phase) -> None:
    """Refuse out-of-order calls; mark the exchange failed until the step completes."""
    if exchange._phase is not expected:
        exchange._phase = _Phase.FAILED
        raise ScramError("SCRAM exchange is not expecting this message")
    exchange._phase = _Phase.FAILED


def _decode(data: bytes, what: str) -> str:
    if len(data) > MAX_MESSAGE_SIZE:
        raise ScramError(f"{what} is too long")
    if b"\x00" in data:
        raise ScramError(f"{what} contains a NUL byte")
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScramError(f"{what} is not valid UTF-8") from e


def _attributes(text: str, what: str) -> list[tuple[str, str]]:
    """Split ``a=v,b=w`` into pairs; values may be empty (libpq sends ``n=``)."""
    pairs = []
    for item in text.split(","):
        if len(item) < 2 or not (item[0].isascii() and item[0].isalpha()) or item[1] != "=":
            raise ScramError(f"malformed {what}: attribute expected")
        pairs.append((item[0], item[2:]))
    return pairs


def _split_gs2(text: str) -> tuple[_Gs2, str]:
    """Split a client-first-message into its GS2 header and client-first-message-bare."""
    parts = text.split(",", 2)
    if len(parts) != 3:
        raise ScramError("malformed client-first-message: GS2 header expected")
    cbind, authzid, bare = parts
    if authzid:
        raise ScramError("SCRAM authorization identity (a=) is not supported")
    if cbind in ("n", "y"):
        return _Gs2(cbind, None, cbind + ",,"), bare
    if cbind.startswith("p=") and _CB_NAME.fullmatch(cbind[2:]):
        return _Gs2("p", cbind[2:], cbind + ",,"), bare
    raise ScramError("malformed client-first-message: bad channel-binding flag")


def _parse_client_first_bare(bare: str) -> str:
    """Return the client nonce. The username (n=) is ignored, as PostgreSQL does."""
    attrs = _attributes(bare, "client-first-message")
    if attrs[0][0] == "m":
        raise ScramError("mandatory SCRAM extensions are not supported")
    if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r":
        raise ScramError("malformed client-first-message: n= and r= expected")
    return _check_nonce(attrs[1][1])


def _parse_client_final(text: str) -> tuple[bytes, str, bytes, str]:
    """Return (cbind-input, nonce, ClientProof, client-final-message-without-proof)."""
    attrs = _attributes(text, "client-final-message")
    names = [name for name, _ in attrs]
    if len(attrs) < 3 or names[:2] != ["c", "r"] or names[-1] != "p" or "p" in names[2:-1]:
        raise ScramError("malformed client-final-message: c=, r= ... p= expected")
    cbind, proof = _b64decode(attrs[0][1]), _b64decode(attrs[-1][1])
    if cbind is None:
        raise ScramError("malformed client-final-message: bad channel-binding base64")
    if proof is None or len(proof) != KEY_LENGTH:
        raise ScramError("malformed client-final-message: bad proof")
    return cbind, attrs[1][1], proof, text[: text.rindex(",p=")]


def _parse_server_first(text: str, client_nonce: str) -> tuple[str, bytes, int]:
    """Return (combined nonce, salt, iterations) from a server-first-message."""
    attrs = _attributes(text, "server-first-message")
    if attrs[0][0] == "m":
        raise ScramError("mandatory SCRAM extensions are not supported")
    if len(attrs) < 3 or [name for name, _ in attrs[:3]] != ["r", "s", "i"]:
        raise ScramError("malformed server-first-message: r=, s=, i= expected")
    nonce = _check_nonce(attrs[0][1])
    if not nonce.startswith(client_nonce) or len(nonce) == len(client_nonce):
        raise ScramAuthenticationFailed("server nonce does not extend our nonce")
    salt = _b64decode(attrs[1][1])
    if not salt:
        raise ScramError("malformed server-first-message: bad salt")
    if not _COUNT.fullmatch(attrs[2][1]) or int(attrs[2][1]) > MAX_ITERATIONS:
        raise ScramError(f"iteration count must be between 1 and {MAX_ITERATIONS}")
    return nonce, salt, int(attrs[2][1])


def _check_nonce(nonce: str) -> str:
    if not _PRINTABLE.fullmatch(nonce):
        raise ScramError("SCRAM nonce must be printable ASCII without commas")
    return nonce


def _new_nonce() -> str:
    return _b64(secrets.token_bytes(NONCE_BYTES))


def _saslname(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str) -> bytes | None:
    """Strict, canonically padded base64, or None."""
    if not _B64.fullmatch(text):
        return None
    return base64.b64decode(text)


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))
