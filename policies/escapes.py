"""Parsing SQL as a server with ``standard_conforming_strings = off`` reads it.

With the setting off, a backslash in a plain ``'…'`` literal is an escape (``'a\\'b'`` is one
string), so the same text splits into other statements than with it on. libpg_query can parse
that way (``pg_query_parse_opts`` with ``PG_QUERY_DISABLE_STANDARD_CONFORMING_STRINGS``), but
pglast only calls ``pg_query_parse``: this module calls the option-taking entry point of the
very libpg_query that pglast's extension module links, through ctypes, and returns the same
JSON parse tree ``pglast.parser.parse_sql_json`` returns. Errors raise pglast's ``ParseError``
with the same arguments. Pure (no I/O); used by ``policies.classify``.
"""

from __future__ import annotations

import ctypes
import functools

from pglast import parser

# pg_query.h: parser option bits (the low four bits are the parse mode, default 0).
PG_QUERY_DISABLE_STANDARD_CONFORMING_STRINGS = 32


class _PgQueryError(ctypes.Structure):
    _fields_ = [("message", ctypes.c_char_p), ("funcname", ctypes.c_char_p),
                ("filename", ctypes.c_char_p), ("lineno", ctypes.c_int),
                ("cursorpos", ctypes.c_int), ("context", ctypes.c_char_p)]


class _PgQueryParseResult(ctypes.Structure):
    _fields_ = [("parse_tree", ctypes.c_void_p), ("stderr_buffer", ctypes.c_void_p),
                ("error", ctypes.POINTER(_PgQueryError))]


@functools.cache
def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL(parser.__file__)  # already loaded by the import: the same copy
    lib.pg_query_parse_opts.restype = _PgQueryParseResult
    lib.pg_query_parse_opts.argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.pg_query_free_parse_result.restype = None
    lib.pg_query_free_parse_result.argtypes = [_PgQueryParseResult]
    return lib


def parse_json_with_escapes(sql: str) -> str:
    """The JSON parse tree of ``sql`` read with backslash escapes in plain literals."""
    lib = _library()
    result = lib.pg_query_parse_opts(sql.encode("utf-8"),
                                     PG_QUERY_DISABLE_STANDARD_CONFORMING_STRINGS)
    try:
        if result.error:
            error = result.error.contents
            message = (error.message or b"syntax error").decode("utf-8", "replace")
            index = error.cursorpos - 1
            raise parser.ParseError(message, index if 0 <= index < len(sql) else None)
        return ctypes.string_at(result.parse_tree).decode("utf-8")
    finally:
        lib.pg_query_free_parse_result(result)
