"""A user-function catalog as ``FUNCTIONS_SQL`` returns it for a hostile test database.

The rows are what PostgreSQL 15 answers for the functions ``tests/e2e/test_functions_e2e.py``
creates (the same names and bodies), so the unit tests, the exfiltration corpus and the
end-to-end tests speak of the same functions.
"""

from __future__ import annotations

from policies.functions import FunctionCatalog, Row, build_functions

LEAK_AGG = "SELECT string_agg(mrn, ',') FROM patients"
ROWS: tuple[Row, ...] = (
    ("b", "pg_catalog", "count", "", "", ""),
    ("b", "pg_catalog", "upper", "", "", ""),
    ("b", "pg_catalog", "string_agg", "", "", ""),
    ("b", "pg_catalog", "textcat", "", "", ""),
    ("b", "pg_catalog", "left", "", "", ""),
    ("b", "pg_catalog", "now", "", "", ""),
    ("f", "public", "leak_sql", "f", "sql", LEAK_AGG),
    ("f", "public", "leak_definer", "f", "sql", LEAK_AGG),
    ("f", "public", "leak_setof", "f", "sql", "SELECT * FROM patients"),
    ("f", "public", "leak_plpgsql", "f", "plpgsql",
     "BEGIN RETURN (SELECT string_agg(mrn, ',') FROM patients); END"),
    ("f", "public", "leak_atomic", "f", "sql",
     "BEGIN ATOMIC\n SELECT string_agg(patients.mrn, ','::text) AS string_agg\n"
     "    FROM patients;\nEND"),
    ("f", "public", "leak_return", "f", "sql",
     "RETURN (SELECT string_agg(patients.mrn, ','::text) AS string_agg FROM patients)"),
    ("f", "public", "wrap_opaque", "f", "sql", "SELECT leak_plpgsql()"),
    ("f", "public", "wrap_sql", "f", "sql", "SELECT public.leak_sql()"),
    ("f", "public", "get_mrn", "f", "sql", "SELECT mrn FROM patients WHERE id = $1"),
    ("f", "public", "dept_name", "f", "sql", "SELECT name FROM departments WHERE id = $1"),
    ("f", "public", "initials", "f", "sql", "SELECT upper(left($1, 1))"),
    ("f", "public", "my_concat", "a", "internal", "aggregate_dummy"),
    ("f", "public", "op_leak", "f", "sql", LEAK_AGG),
    ("f", "public", "to_boxed", "f", "sql",
     "SELECT ROW(string_agg(mrn, ','))::boxed FROM patients"),
    ("f", "public", "stamp", "f", "plpgsql", "BEGIN NEW.x := now()::text; RETURN NEW; END"),
    ("f", "public", "ext_digest", "f", "extension", "pg_digest"),
    ("f", "public", "ping", "p", "plpgsql", "BEGIN NULL; END"),
    ("f", "public", "recursive_a", "f", "sql", "SELECT recursive_b()"),
    ("f", "public", "recursive_b", "f", "sql", "SELECT recursive_a()"),
    ("d", "public", "my_concat", "f", "pg_catalog", "textcat"),
    ("d", "public", "leak_atomic", "r", "public", "patients"),
    ("d", "public", "leak_return", "r", "public", "patients"),
    ("v", "public", "fn_view", "f", "public", "leak_sql"),
    ("w", "public", "stamped", "f", "public", "stamp"),
    ("w", "public", "noted", "f", "public", "leak_plpgsql"),
    ("w", "public", "ruled", "r", "public", "patients"),
    ("o", "", "###", "", "public", "op_leak"),
    ("c", "public", "boxed", "e", "public", "to_boxed"),
)


def catalog() -> FunctionCatalog:
    return build_functions(ROWS)
