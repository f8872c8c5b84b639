"""The frames the relay looks for and the frames it writes itself.

Type bytes of the messages the relay dispatches on and the refusal statement the upstream runs
in place of a refused one. Used by
``gateway/proxy/relay.py`` and ``gateway/proxy/startup.py``.
"""

from __future__ import annotations

from protocols.postgres import messages as m
from protocols.postgres.encoder import encode

from ..errors import GatewayError

# Raised by the upstream in place of a refused statement; its error is replaced by ours.
REFUSAL_SQL = (
    "DO $phigate$BEGIN RAISE EXCEPTION 'phigate: statement refused by the gateway' "
    "USING ERRCODE = '42501'; END$phigate$"
)
REFUSAL_QUERY = encode(m.Query(sql=REFUSAL_SQL))
# Sent in place of a string the gateway consumed entirely (``SET phigate.reason``) when
# something is still in flight: the upstream then answers SET and ReadyForQuery in order (and
# fails it in an aborted transaction, as it would the client's own SET).
NOOP_SET_SQL = "SET phigate_gateway.noop = ''"
# Extended-protocol variant: ParseComplete and BindComplete that answer it are swallowed.
REFUSAL_EXTENDED = b"".join((
    encode(m.Parse(name="", sql=REFUSAL_SQL, param_types=())),
    encode(m.Bind(portal="", statement="", param_formats=(), params=(), result_formats=())),
    encode(m.Execute(portal="", max_rows=0)),
    encode(m.Flush()),
))

# Frontend type bytes
F_QUERY, F_PARSE, F_BIND, F_EXECUTE = ord("Q"), ord("P"), ord("B"), ord("E")
F_SYNC, F_CLOSE, F_FUNCTION, F_TERMINATE = ord("S"), ord("C"), ord("F"), ord("X")
F_COPY_DATA, F_COPY_DONE, F_COPY_FAIL = ord("d"), ord("c"), ord("f")
F_DESCRIBE, F_FLUSH = ord("D"), ord("H")
FRONTEND_TYPES = frozenset(b"QPBESCFXdcfDH")
# Backend type bytes
B_DATA_ROW, B_COMMAND_COMPLETE, B_ERROR = ord("D"), ord("C"), ord("E")
B_EMPTY_QUERY, B_PORTAL_SUSPENDED, B_READY = ord("I"), ord("s"), ord("Z")
B_PARSE_COMPLETE, B_BIND_COMPLETE, B_COPY_DATA = ord("1"), ord("2"), ord("d")
B_ROW_DESCRIPTION, B_NOTICE, B_PARAMETER_STATUS = ord("T"), ord("N"), ord("S")
B_COPY_IN_RESPONSE, B_COPY_OUT_RESPONSE = ord("G"), ord("H")
B_FUNCTION_RESULT = ord("V")  # FunctionCallResponse: a fast-path call's result, before its Z
# Looked at only when a hook asked to capture the statement's result.
B_RESULT_DETAIL = frozenset((B_ROW_DESCRIPTION, B_NOTICE, B_COPY_IN_RESPONSE,
                              B_COPY_OUT_RESPONSE))
B_NO_DATA = ord("n")
B_DESCRIPTION = frozenset((B_ROW_DESCRIPTION, B_NO_DATA))
B_END_OF_STATEMENT = frozenset((B_COMMAND_COMPLETE, B_ERROR, B_EMPTY_QUERY,
                                 B_PORTAL_SUSPENDED, B_READY, B_PARSE_COMPLETE,
                                 B_BIND_COMPLETE))


def error_frame(error: GatewayError) -> bytes:
    return encode(m.error_response(error.sqlstate, error.message, severity=error.severity,
                                   detail=error.detail, hint=error.hint,
                                   position=error.position))
