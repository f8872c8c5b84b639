"""PostgreSQL v3 messages as frozen, slotted dataclasses: one class per message.

Owned by the codec: :mod:`.decoder` builds these from raw frames and :mod:`.encoder` turns them
back into bytes. Every message keeps the exact frame it was decoded from in
``raw`` (empty when the gateway built it), so the relay can forward verbatim
and re-encode only what the gateway itself writes. ``raw`` takes no part in
equality, so a decoded message equals the one it was encoded from.

Type bytes live in :class:`FrontendType` and :class:`BackendType`: the two
directions reuse letters ('D' is Describe from a client but DataRow from a
server), so they are kept in separate namespaces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from .errors import LocalProtocolError

# Untyped startup packets carry one of these codes where a typed message has its type byte.
PROTOCOL_MAJOR: Final = 3
PROTOCOL_3_0: Final = 3 << 16  # 196608
CANCEL_REQUEST_CODE: Final = 1234 << 16 | 5678  # 80877102
SSL_REQUEST_CODE: Final = 1234 << 16 | 5679  # 80877103
GSSENC_REQUEST_CODE: Final = 1234 << 16 | 5680  # 80877104
# Protocol 3.2 (PostgreSQL 18) made cancel keys variable length; 3.0 keys are 4 bytes.
MIN_CANCEL_KEY: Final = 4
MAX_CANCEL_KEY: Final = 256


class FrontendType:
    """Type bytes of typed messages a client sends, as ints to compare with ``frame[0]``."""

    BIND: Final = ord("B")
    CLOSE: Final = ord("C")
    COPY_DATA: Final = ord("d")
    COPY_DONE: Final = ord("c")
    COPY_FAIL: Final = ord("f")
    DESCRIBE: Final = ord("D")
    EXECUTE: Final = ord("E")
    FLUSH: Final = ord("H")
    FUNCTION_CALL: Final = ord("F")
    PARSE: Final = ord("P")
    # One letter for PasswordMessage, SASLInitialResponse, SASLResponse and GSSResponse:
    # only the authentication exchange in progress says which one it is.
    PASSWORD: Final = ord("p")
    QUERY: Final = ord("Q")
    SYNC: Final = ord("S")
    TERMINATE: Final = ord("X")


class BackendType:
    """Type bytes of typed messages a server sends, as ints to compare with ``frame[0]``."""

    AUTHENTICATION: Final = ord("R")
    BACKEND_KEY_DATA: Final = ord("K")
    BIND_COMPLETE: Final = ord("2")
    CLOSE_COMPLETE: Final = ord("3")
    COMMAND_COMPLETE: Final = ord("C")
    COPY_BOTH_RESPONSE: Final = ord("W")
    COPY_DATA: Final = ord("d")
    COPY_DONE: Final = ord("c")
    COPY_IN_RESPONSE: Final = ord("G")
    COPY_OUT_RESPONSE: Final = ord("H")
    DATA_ROW: Final = ord("D")
    EMPTY_QUERY_RESPONSE: Final = ord("I")
    ERROR_RESPONSE: Final = ord("E")
    FUNCTION_CALL_RESPONSE: Final = ord("V")
    NEGOTIATE_PROTOCOL_VERSION: Final = ord("v")
    NO_DATA: Final = ord("n")
    NOTICE_RESPONSE: Final = ord("N")
    NOTIFICATION_RESPONSE: Final = ord("A")
    PARAMETER_DESCRIPTION: Final = ord("t")
    PARAMETER_STATUS: Final = ord("S")
    PARSE_COMPLETE: Final = ord("1")
    PORTAL_SUSPENDED: Final = ord("s")
    READY_FOR_QUERY: Final = ord("Z")
    ROW_DESCRIPTION: Final = ord("T")


class AuthCode:
    """The Int32 that follows 'R' and says which Authentication message it is."""

    OK: Final = 0
    KERBEROS_V5: Final = 2
    CLEARTEXT_PASSWORD: Final = 3
    MD5_PASSWORD: Final = 5
    SCM_CREDENTIAL: Final = 6
    GSS: Final = 7
    GSS_CONTINUE: Final = 8
    SSPI: Final = 9
    SASL: Final = 10
    SASL_CONTINUE: Final = 11
    SASL_FINAL: Final = 12


# Codes that AuthenticationOther stands for; only GSSContinue carries data.
OTHER_AUTH_CODES: Final = frozenset(
    {AuthCode.KERBEROS_V5, AuthCode.SCM_CREDENTIAL, AuthCode.GSS, AuthCode.GSS_CONTINUE,
     AuthCode.SSPI}
)


# --- Startup packets (untyped) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartupMessage:
    """The first packet of a session: protocol version and connection parameters."""

    protocol_version: int
    parameters: dict[str, str]
    raw: bytes = field(default=b"", compare=False, repr=False)

    @property
    def major(self) -> int:
        return self.protocol_version >> 16

    @property
    def minor(self) -> int:
        return self.protocol_version & 0xFFFF

    @property
    def user(self) -> str | None:
        return self.parameters.get("user")

    @property
    def database(self) -> str | None:
        """The database asked for; PostgreSQL defaults it to the user name."""
        return self.parameters.get("database", self.user)


@dataclass(frozen=True, slots=True)
class SSLRequest:
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class GSSENCRequest:
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """Sent on a fresh connection. ``secret_key`` is 4 bytes in 3.0, up to 256 in 3.2."""

    process_id: int
    secret_key: bytes
    raw: bytes = field(default=b"", compare=False, repr=False)


# --- Frontend ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query:
    sql: str
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Parse:
    name: str
    sql: str
    param_types: tuple[int, ...] = ()
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Bind:
    """``param_formats`` has 0 entries (all text), 1 (applies to all) or one per param."""

    portal: str
    statement: str
    param_formats: tuple[int, ...] = ()
    params: tuple[bytes | None, ...] = ()
    result_formats: tuple[int, ...] = ()
    raw: bytes = field(default=b"", compare=False, repr=False)

    def param_format(self, index: int) -> int:
        """The format code (0 text, 1 binary) that applies to parameter ``index``."""
        if not self.param_formats:
            return 0
        if len(self.param_formats) == 1:
            return self.param_formats[0]
        return self.param_formats[index]


@dataclass(frozen=True, slots=True)
class Describe:
    kind: str  # 'S' prepared statement, 'P' portal
    name: str
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Execute:
    portal: str
    max_rows: int = 0  # 0 means no limit
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Sync:
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Flush:
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Close:
    kind: str  # 'S' prepared statement, 'P' portal
    name: str
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class CopyData:
    """Sent by both sides; same layout and type byte in either direction."""

    data: bytes
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class CopyDone:
    """Sent by both sides."""

    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class CopyFail:
    message: str
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class FunctionCall:
    function_oid: int
    arg_formats: tuple[int, ...]
    args: tuple[bytes | None, ...]
    result_format: int
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Terminate:
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PasswordMessage:
    """Any 'p' frame, undecoded: password, SASL or GSS data depending on the auth phase."""

    data: bytes
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SASLInitialResponse:
    """Encodes as a 'p' frame; read one with ``decoder.as_sasl_initial_response``."""

    mechanism: str
    data: bytes | None
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SASLResponse:
    """Encodes as a 'p' frame; read one with ``decoder.as_sasl_response``."""

    data: bytes
    raw: bytes = field(default=b"", compare=False, repr=False)


# --- Backend -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthenticationOk:
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AuthenticationCleartextPassword:
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AuthenticationMD5Password:
    salt: bytes  # exactly 4 bytes
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AuthenticationSASL:
    mechanisms: tuple[str, ...]
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AuthenticationSASLContinue:
    data: bytes
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AuthenticationSASLFinal:
    data: bytes
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AuthenticationOther:
    """Kerberos V5, SCM credential, GSS, SSPI (no data) or GSSContinue (with data)."""

    code: int
    data: bytes = b""
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ParameterStatus:
    name: str
    value: str
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class BackendKeyData:
    """``secret_key`` is 4 bytes in protocol 3.0 and 4 to 256 bytes in 3.2."""

    process_id: int
    secret_key: bytes
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ReadyForQuery:
    status: str  # 'I' idle, 'T' in a transaction, 'E' in a failed transaction
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class FieldDescription:
    """One column of a RowDescription; not a message, so it has no ``raw``."""

    name: str
    table_oid: int = 0
    column_number: int = 0
    type_oid: int = 0
    type_size: int = -1
    type_modifier: int = -1
    format: int = 0


@dataclass(frozen=True, slots=True)
class RowDescription:
    fields: tuple[FieldDescription, ...]
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class DataRow:
    values: tuple[bytes | None, ...]
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class CommandComplete:
    tag: str
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class EmptyQueryResponse:
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ParameterDescription:
    type_oids: tuple[int, ...]
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class NoData:
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PortalSuspended:
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ParseComplete:
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class BindComplete:
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class CloseComplete:
    raw: bytes = field(default=b"", compare=False, repr=False)


class _Fields:
    """Read access to the one-letter fields shared by ErrorResponse and NoticeResponse."""

    __slots__ = ()
    fields: dict[str, str]

    @property
    def severity(self) -> str:
        """The non-localised severity (V) when present, else the possibly localised one (S)."""
        return self.fields.get("V") or self.fields.get("S", "")

    @property
    def sqlstate(self) -> str:
        return self.fields.get("C", "")

    @property
    def message(self) -> str:
        return self.fields.get("M", "")

    @property
    def detail(self) -> str | None:
        return self.fields.get("D")

    @property
    def hint(self) -> str | None:
        return self.fields.get("H")


@dataclass(frozen=True, slots=True)
class ErrorResponse(_Fields):
    fields: dict[str, str]
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class NoticeResponse(_Fields):
    fields: dict[str, str]
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class NotificationResponse:
    process_id: int
    channel: str
    payload: str
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class NegotiateProtocolVersion:
    """The server's newest minor version for major 3, and the ``_pq_.`` options it ignored."""

    newest_minor: int
    unrecognized: tuple[str, ...] = ()
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class CopyInResponse:
    overall_format: int
    column_formats: tuple[int, ...]
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class CopyOutResponse:
    overall_format: int
    column_formats: tuple[int, ...]
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class CopyBothResponse:
    overall_format: int
    column_formats: tuple[int, ...]
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class FunctionCallResponse:
    result: bytes | None
    raw: bytes = field(default=b"", compare=False, repr=False)


StartupPacket: TypeAlias = StartupMessage | SSLRequest | GSSENCRequest | CancelRequest
FrontendMessage: TypeAlias = (
    Query | Parse | Bind | Describe | Execute | Sync | Flush | Close | CopyData | CopyDone
    | CopyFail | FunctionCall | Terminate | PasswordMessage
)
# Encodable but never produced by decode_frontend: a 'p' frame decodes as PasswordMessage.
SASLMessage: TypeAlias = SASLInitialResponse | SASLResponse
AuthenticationMessage: TypeAlias = (
    AuthenticationOk | AuthenticationCleartextPassword | AuthenticationMD5Password
    | AuthenticationSASL | AuthenticationSASLContinue | AuthenticationSASLFinal
    | AuthenticationOther
)
BackendMessage: TypeAlias = (
    AuthenticationMessage | ParameterStatus | BackendKeyData | ReadyForQuery | RowDescription
    | DataRow | CommandComplete | EmptyQueryResponse | ParameterDescription | NoData
    | PortalSuspended | ParseComplete | BindComplete | CloseComplete | ErrorResponse
    | NoticeResponse | NotificationResponse | NegotiateProtocolVersion | CopyInResponse
    | CopyOutResponse | CopyBothResponse | FunctionCallResponse | CopyData | CopyDone
)
Message: TypeAlias = StartupPacket | FrontendMessage | SASLMessage | BackendMessage


# --- Building errors and notices -----------------------------------------------------------

ERROR_SEVERITIES: Final = frozenset({"ERROR", "FATAL", "PANIC"})
NOTICE_SEVERITIES: Final = frozenset({"WARNING", "NOTICE", "DEBUG", "INFO", "LOG"})
_SQLSTATE = re.compile(r"[0-9A-Z]{5}")


def error_response(
    sqlstate: str,
    message: str,
    *,
    severity: str | None = None,
    detail: str | None = None,
    hint: str | None = None,
    position: int | None = None,
    notice: bool = False,
) -> ErrorResponse | NoticeResponse:
    """An ErrorResponse (or NoticeResponse) with the fields PostgreSQL always sends.

    Fills S and V (the non-localised copy PostgreSQL 9.6+ adds), C and M, then
    D, H and P (1-based character position in the query) when given. ``severity``
    defaults to ERROR, or NOTICE for a notice.
    """
    allowed = NOTICE_SEVERITIES if notice else ERROR_SEVERITIES
    severity = severity or ("NOTICE" if notice else "ERROR")
    if severity not in allowed:
        raise LocalProtocolError(f"severity {severity!r} is not one of {sorted(allowed)}")
    if not _SQLSTATE.fullmatch(sqlstate):
        raise LocalProtocolError(f"invalid SQLSTATE {sqlstate!r}")
    fields = {"S": severity, "V": severity, "C": sqlstate, "M": message}
    if detail is not None:
        fields["D"] = detail
    if hint is not None:
        fields["H"] = hint
    if position is not None:
        fields["P"] = str(position)
    return NoticeResponse(fields) if notice else ErrorResponse(fields)
