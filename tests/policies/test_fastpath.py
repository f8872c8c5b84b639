"""Fast-path calls classified as the SQL call they amount to (policies.fastpath)."""

from __future__ import annotations

import pytest

from policies.fastpath import LARGE_OBJECTS, call_sql, classify_call


def test_call_sql_names_the_function_and_its_placeholders() -> None:
    assert call_sql("pg_catalog", "lowrite", 2) == "SELECT pg_catalog.lowrite($1, $2)"
    assert call_sql("public", "now", 0) == "SELECT public.now()"
    assert call_sql("Odd Schema", 'x"); DROP TABLE t; --', 1) == \
        'SELECT "Odd Schema"."x""); DROP TABLE t; --"($1)'


def test_a_hostile_function_name_stays_one_call() -> None:
    statement = classify_call("public", "f(); DROP TABLE patients; SELECT g", 1)
    assert statement is not None and statement.classes == {"select"}
    assert statement.tables == ()


@pytest.mark.parametrize(("name", "classes", "touches_data"), [
    ("loread", {"select"}, True),
    ("lo_open", {"select"}, False),
    ("lo_lseek64", {"select"}, False),
    ("lowrite", {"update"}, True),
    ("lo_creat", {"insert"}, True),
    ("lo_unlink", {"delete"}, True),
])
def test_large_object_functions_read_or_write_data(name: str, classes: set[str],
                                                   touches_data: bool) -> None:
    statement = classify_call("pg_catalog", name, 2)
    assert statement is not None and statement.classes == classes
    assert (LARGE_OBJECTS in statement.tables) is touches_data
    assert not statement.dangerous


@pytest.mark.parametrize("name", ["lo_import", "lo_export", "pg_read_file", "dblink_exec"])
def test_server_side_file_and_remote_functions_are_dangerous(name: str) -> None:
    statement = classify_call("pg_catalog", name, 1)
    assert statement is not None and statement.dangerous


def test_a_same_named_function_elsewhere_is_an_ordinary_call() -> None:
    statement = classify_call("public", "loread", 2)
    assert statement is not None and statement.tables == ()
