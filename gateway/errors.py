"""The gateway's error tree.

``GatewayError`` subclasses go on the wire: each carries the SQLSTATE the
client sees in its ErrorResponse. ``ConfigError`` and journal corruption never
go on the wire; the CLI maps them to exit codes.
"""

from __future__ import annotations


class GatewayError(Exception):
    """An error the client is told about, with the SQLSTATE it will see."""

    sqlstate = "XX000"
    severity = "FATAL"

    def __init__(self, message: str, *, hint: str | None = None, detail: str | None = None,
                 position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail = detail
        self.position = position  # 1-based character in the query, as PostgreSQL reports it


class AuthenticationFailed(GatewayError):
    """Wrong user or password; deliberately says nothing about which."""

    sqlstate = "28P01"


class AuthorizationRejected(GatewayError):
    """The connection is refused before authentication (e.g. plaintext when TLS is required)."""

    sqlstate = "28000"


class ParameterRefused(GatewayError):
    """A startup parameter the gateway cannot allow (it would confuse the policy parser)."""

    sqlstate = "22023"


class UnknownDatabase(GatewayError):
    sqlstate = "3D000"


class TooManyConnections(GatewayError):
    sqlstate = "53300"


class UpstreamUnavailable(GatewayError):
    """The upstream database could not be reached or refused the service credential."""

    sqlstate = "08006"


class StatementRefused(GatewayError):
    """A statement the gateway will not forward; the session stays usable."""

    severity = "ERROR"


class PolicyDenied(StatementRefused):
    sqlstate = "42501"


class SyntaxRejected(StatementRefused):
    """SQL the parser rejects: answered as PostgreSQL would, with the parser's message."""

    sqlstate = "42601"


class UnreadableText(StatementRefused):
    """Statement text that is not valid in the session's client encoding."""

    sqlstate = "22021"


class RowLimitExceeded(StatementRefused):
    sqlstate = "54000"


class StatementTooComplex(StatementRefused):
    """Deciding the statement would exceed the policy engine's step budget."""

    sqlstate = "54001"


class JournalFull(StatementRefused):
    """The journal's disk is full: the statement is refused, never run unrecorded."""

    sqlstate = "53100"


class JournalWriteFailed(StatementRefused):
    """The journal could not be written: the statement is refused, never run unrecorded."""

    sqlstate = "58030"


class ConfigError(Exception):
    """A configuration problem, located by file, line and key path."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ":".join(str(part) for part in (self.file, self.line) if part is not None)
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}" if where else f"{key.strip()} {self.message}".strip()
