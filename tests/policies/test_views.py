"""View dependencies: the mapping builder, and the catalog query against a real PostgreSQL."""

from __future__ import annotations

import asyncpg

from policies.engine import Engine
from policies.phi import PhiMatcher
from policies.statement import TableRef
from policies.views import CATALOG_SQL, Unsettled, build_view_dependencies, relation_names
from tests.conftest import ClusterInfo
from tests.policies.conftest import MakeCtx


def test_mapping_lists_direct_dependencies_under_both_names() -> None:
    rows = [
        ("public", "patient_directory", "public", "patients"),
        ("reporting", "summary", "public", "patient_directory"),
        ("reporting", "summary", "public", "departments"),
        ("archive", "patient_directory", "archive", "old_patients"),
        ("public", "patients_2024", "public", "patients"),
    ]
    deps = build_view_dependencies(rows)
    assert deps["reporting.summary"] == {"public.patient_directory", "public.departments"}
    assert deps["summary"] == deps["reporting.summary"]
    assert deps["patient_directory"] == {"public.patients", "archive.old_patients"}
    assert deps["public.patients_2024"] == {"public.patients"}
    matcher = PhiMatcher(["clinic.public.patients"])  # the walk makes it transitive
    assert matcher.touched("clinic", [TableRef("summary", "reporting")], deps) == \
        ["public.patients"]


def test_views_that_refer_to_each_other_are_all_touched() -> None:
    deps = build_view_dependencies([("s", "a", "s", "b"), ("s", "b", "s", "a")])
    assert deps["s.a"] == {"s.b"}
    matcher = PhiMatcher(["clinic.s.b"])
    assert matcher.touched("clinic", [TableRef("a", "s")], deps) == ["s.b"]
    assert PhiMatcher(["clinic.s.a"]).touched("clinic", [TableRef("b")], deps) == ["s.a"]


async def test_catalog_query_against_postgres(pg_cluster: ClusterInfo) -> None:
    conn = await asyncpg.connect(pg_cluster.superuser_dsn)
    try:
        await conn.execute("""
            CREATE SCHEMA IF NOT EXISTS phigate_views_test;
            CREATE TABLE phigate_views_test.visits (id int, at date) PARTITION BY RANGE (at);
            CREATE TABLE phigate_views_test.visits_2024 PARTITION OF phigate_views_test.visits
                FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
            CREATE VIEW phigate_views_test.names AS
                SELECT p.id FROM public.patients p JOIN phigate_views_test.visits v ON v.id = p.id;
            CREATE MATERIALIZED VIEW phigate_views_test.counts AS
                SELECT count(*) FROM phigate_views_test.names;
        """)
        rows = [tuple(r) for r in await conn.fetch(CATALOG_SQL)]
    finally:
        await conn.execute("DROP SCHEMA phigate_views_test CASCADE")
        await conn.close()
    deps = build_view_dependencies(rows)  # type: ignore[arg-type]
    assert "public.patients" in deps["public.patient_directory"]  # from the demo data set
    assert deps["phigate_views_test.names"] == {"public.patients", "phigate_views_test.visits"}
    assert deps["phigate_views_test.counts"] == {"phigate_views_test.names"}
    assert deps["phigate_views_test.visits_2024"] == {"phigate_views_test.visits"}
    # and the parent reads its partition's rows: a PHI table attached under a plain parent
    assert deps["phigate_views_test.visits"] == {"phigate_views_test.visits_2024"}


def test_a_temporary_view_is_listed_as_pg_temp_too() -> None:
    deps = build_view_dependencies([("pg_temp_3", "tv", "public", "patients")])
    assert deps["pg_temp.tv"] == deps["tv"] == {"public.patients"}
    names = relation_names([("pg_temp_3", "TV"), ("public", "departments")])
    assert {"pg_temp.tv", "pg_temp_3.tv", "tv", "public.departments", "departments"} == names


def test_unsettled_views_make_every_relation_read_every_phi_table() -> None:
    matcher = PhiMatcher(["clinic.public.patients", "clinic.public.lab_*", "other.public.x"])
    unsettled = Unsettled({}, "DDL of this transaction not yet committed")
    assert matcher.touched("clinic", [TableRef("departments")], unsettled) == [
        "clinic.public.patients", "clinic.public.lab_*"]
    assert matcher.touched("clinic", [], unsettled) == []  # reads no relation: no PHI
    assert matcher.touched("clinic", [TableRef("departments")], {}) == []


def test_what_follows_ddl_in_one_string_is_decided_unsettled(engine: Engine,
                                                             ctx: MakeCtx) -> None:
    before = engine.decide(ctx("oncall", reason="INC-1"),
                           "SELECT * FROM departments; CREATE VIEW v AS SELECT 1")
    assert before.allowed and not before.phi_tables  # DDL reads nothing, even unsettled
    after = engine.decide(ctx("oncall", reason="INC-1"),
                          "CREATE VIEW v AS SELECT 1; SELECT * FROM departments")
    assert not after.allowed and "public.patients" in " ".join(after.phi_tables)
    assert "DDL earlier in this query string: every relation read counts" in after.reason
