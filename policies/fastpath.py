"""Fast-path function calls (the protocol's FunctionCall): what a call by OID amounts to.

libpq's large-object API (psql's ``\\lo_import``, ``\\lo_export``, ``\\lo_unlink``) and drivers
call functions by OID without SQL. The gateway looks the OID up in the upstream's ``pg_proc``
and hands the schema, name and argument count here; ``classify_call`` answers with the
classification of the equivalent ``SELECT schema.name($1, …)``, so every rule, ``dangerous``
function (server-side ``lo_import``/``lo_export``, ``pg_read_file``…) and PHI pattern applies
to it. Large-object functions also read or write data: they get the class of what they do and
touch ``pg_catalog.pg_largeobject``, so ``phi_tables`` can name it and its row budget counts
each ``loread``. Pure: ``gateway/policy/hook.py`` drives it.
"""

from __future__ import annotations

import dataclasses

from policies.classify import classify
from policies.statement import Statement, TableRef

LARGE_OBJECTS = TableRef("pg_largeobject", "pg_catalog")
# What each large-object function does to the data. Opening, seeking and closing only serve
# reads and writes: they need the right to read but touch no data themselves, so neither
# ``phi: deny`` nor the PHI row budget sees them; reads (each ``loread`` one row), writes and
# unlinks touch ``pg_catalog.pg_largeobject``.
LARGE_OBJECT_CLASSES = {
    "lo_open": "select", "lo_close": "select", "lo_lseek": "select", "lo_lseek64": "select",
    "lo_tell": "select", "lo_tell64": "select",
}
LARGE_OBJECT_DATA = {
    "loread": "select", "lo_get": "select", "lo_export": "select",
    "lowrite": "update", "lo_put": "update", "lo_truncate": "update", "lo_truncate64": "update",
    "lo_creat": "insert", "lo_create": "insert", "lo_from_bytea": "insert", "lo_import": "insert",
    "lo_unlink": "delete",
}  # fmt: skip


def call_sql(schema: str, name: str, arguments: int) -> str:
    """The SQL a call amounts to, as the journal shows it: ``SELECT s.f($1, $2)``."""
    placeholders = ", ".join(f"${i}" for i in range(1, arguments + 1))
    return f"SELECT {_ident(schema)}.{_ident(name)}({placeholders})"


def classify_call(schema: str, name: str, arguments: int) -> Statement | None:
    """The classification of one call; None if the equivalent SQL does not parse."""
    classification = classify(call_sql(schema, name, arguments))
    if classification.error is not None or len(classification.statements) != 1:
        return None
    statement = classification.statements[0]
    if schema != "pg_catalog":
        return statement
    if name in LARGE_OBJECT_DATA:
        return dataclasses.replace(statement, classes=frozenset({LARGE_OBJECT_DATA[name]}),
                                   tables=(*statement.tables, LARGE_OBJECTS))
    if name in LARGE_OBJECT_CLASSES:
        return dataclasses.replace(statement, classes=frozenset({LARGE_OBJECT_CLASSES[name]}))
    return statement


def _ident(name: str) -> str:
    """Quote an identifier when PostgreSQL would not read it back as written."""
    if name.isidentifier() and name == name.lower() and name.isascii():
        return name
    return '"' + name.replace('"', '""') + '"'
