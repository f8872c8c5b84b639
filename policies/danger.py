"""What makes a statement dangerous: effects the gateway cannot see or must never let through.

Server-side file and program access, dynamic SQL hidden in strings, connections to other servers,
role changes through ``set_config``, code the parser cannot see (DO blocks, untrusted languages,
extensions). Settings that change how the server reads SQL (``client_encoding``,
``standard_conforming_strings``) are not dangerous: the gateway follows them (it reads each
session's text as the server does, see ``gateway/proxy/relay.py``). Dangerous statements are
denied unless a rule explicitly allows ``dangerous``. ``classify`` calls ``statement_dangers``.
"""

from __future__ import annotations

from policies.sqltree import NOT_CONSTANT, Json, constant, string_list, unwrap

DANGEROUS_FUNCTIONS = frozenset(
    {
        # server files and directories
        "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "lo_import",
        "lo_export", "pg_file_write", "pg_file_rename", "pg_file_unlink", "pg_file_sync",
        "pg_logdir_ls",
        # SQL hidden in a string argument, or a table named by a string
        "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "table_to_xml",
        "table_to_xmlschema", "table_to_xml_and_xmlschema", "cursor_to_xml", "cursor_to_xmlschema",
        "schema_to_xml", "schema_to_xmlschema", "schema_to_xml_and_xmlschema", "database_to_xml",
        "database_to_xmlschema", "database_to_xml_and_xmlschema", "ts_stat", "ts_rewrite",
        # server control and change streams carrying row data
        "pg_reload_conf", "pg_rotate_logfile", "pg_promote", "pg_terminate_backend",
        "pg_cancel_backend", "pg_logical_emit_message", "pg_import_system_collations",
    }
)  # fmt: skip
DANGEROUS_PREFIXES = (
    "dblink",
    "pg_ls_",
    "pg_logical_slot_",
    "pg_replication_slot_",
    "pg_create_logical_replication_slot",
    "pg_create_physical_replication_slot",
    "pg_replication_origin_",
)
_DANGEROUS_STATEMENTS = {
    "DoStmt": "DO block: its effect is not visible to the gateway",
    "LoadStmt": "LOAD of a shared library",
    "AlterSystemStmt": "ALTER SYSTEM changes the server configuration",
    "CreateExtensionStmt": "CREATE EXTENSION installs server-side code",
    "CreatePLangStmt": "CREATE LANGUAGE installs server-side code",
    "CreateFdwStmt": "foreign data wrappers reach outside the database",
    "CreateForeignServerStmt": "foreign servers reach outside the database",
    "CreateForeignTableStmt": "foreign tables reach outside the database",
    "ImportForeignSchemaStmt": "foreign tables reach outside the database",
    "CreatePublicationStmt": "publications stream rows out of the database",
    "AlterPublicationStmt": "publications stream rows out of the database",
    "CreateSubscriptionStmt": "subscriptions connect to other servers",
}
_TRUSTED_LANGUAGES = frozenset({"sql", "plpgsql", "plperl", "pltcl", "plv8"})
_ROLE_SETTINGS = frozenset({"role", "session_authorization"})


def function_danger(call: dict[str, Json]) -> tuple[str | None, bool]:
    """(why the call is dangerous or None, whether it changes the role)."""
    names = [n.lower() for n in string_list(call.get("funcname"))]
    if not names:
        return None, False
    base, qualified = names[-1], ".".join(names)
    if len(names) > 1 and (names[-2] == "pg_temp" or names[-2].startswith("pg_temp_")):
        return f"{qualified}(): a function in pg_temp hides what it runs", False
    if base == "set_config":
        return _set_config_danger(call.get("args") or [])
    if base in DANGEROUS_FUNCTIONS or base.startswith(DANGEROUS_PREFIXES):
        return f"{qualified}()", False
    return None, False


def _set_config_danger(args: list[Json]) -> tuple[str | None, bool]:
    name = constant(args[0]) if args else NOT_CONSTANT
    if not isinstance(name, str):
        return "set_config() with a computed setting name", True
    name = name.strip().lower()
    if name in _ROLE_SETTINGS:
        return f"set_config('{name}', ...) changes the role", True
    return None, False


def statement_danger(kind: str, body: dict[str, Json]) -> str | None:
    """Dangers of the statement node itself (not of what it contains)."""
    if kind in _DANGEROUS_STATEMENTS:
        return _DANGEROUS_STATEMENTS[kind]
    if kind == "CopyStmt":
        if body.get("is_program"):
            return "COPY ... PROGRAM runs a program on the server"
        if body.get("filename"):
            return "COPY to or from a server file"
    if kind == "CreateFunctionStmt":
        language = _function_language(body)
        if language not in _TRUSTED_LANGUAGES:
            return f"function in untrusted language {language!r}"
    return None


def _function_language(body: dict[str, Json]) -> str:
    for option in body.get("options") or ():
        _, elem = unwrap(option)
        if elem.get("defname") == "language":
            value = constant(elem.get("arg"))
            if isinstance(value, str):
                return value.lower()
            return "".join(string_list([elem.get("arg")])).lower()
    return "sql"
