"""The exfiltration corpus: ways an insider who knows SQL gets PHI out in another shape.

Each entry is a statement and the decision the example clinic policy must give a clinician
(alice: ``max_rows: 500``, PHI allowed) and an engineer (bob: ``phi: deny``):

* ``export``: denied by ``no-bulk-export`` as a bulk export of PHI;
* ``phi``: denied because the rule forbids PHI (for bob);
* ``allow``: allowed.

``via`` (optional) is a fragment of the construct the decision must name. Shared by
``test_exfiltration`` and ``bench/policy.py`` (decision latency of this corpus).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Attempt:
    sql: str
    alice: str
    bob: str
    via: str = ""


def A(sql: str, alice: str, bob: str = "phi", via: str = "") -> Attempt:  # noqa: N802
    return Attempt(sql, alice, bob, via)


ATTEMPTS: tuple[Attempt, ...] = (
    # collecting aggregates behind a filter that filters nothing
    A("SELECT jsonb_agg(p) FROM patients p WHERE id > 0", "export", via="aggregate jsonb_agg"),
    A("SELECT json_agg(p) FROM patients p WHERE id > 0", "export", via="json_agg"),
    A("SELECT array_agg(ssn) FROM patients WHERE ssn IS NOT NULL", "export", via="array_agg"),
    A("SELECT string_agg(name || ':' || ssn, ',') FROM patients WHERE id > 0", "export",
      via="string_agg"),
    A("SELECT jsonb_object_agg(id, ssn) FROM patients WHERE id > 0", "export",
      via="jsonb_object_agg"),
    A("SELECT json_object_agg(ssn, dob) FROM patients WHERE id > 0", "export"),
    A("SELECT xmlagg(xmlelement(name p, name)) FROM patients WHERE id > 0", "export",
      via="xmlagg"),
    A("SELECT JSON_ARRAYAGG(name) FROM patients WHERE id > 0", "export", via="JSON_ARRAYAGG"),
    A("SELECT JSON_OBJECTAGG(ssn : name) FROM patients WHERE id > 0", "export",
      via="JSON_OBJECTAGG"),
    A("SELECT range_agg(int4range(id, id + 1)) FROM patients WHERE id > 0", "export"),
    A("SELECT pg_catalog.string_agg(ssn, ',') FROM patients WHERE id > 0", "export"),
    A("SELECT string_agg(DISTINCT ssn, ',' ORDER BY ssn) FROM patients WHERE id > 0", "export"),
    A("SELECT array_agg(ssn) FILTER (WHERE sex = 'F') FROM patients WHERE id > 0", "export"),
    # ordered-set, hypothetical-set, user-defined and unknown aggregates
    A("SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY ssn) FROM patients WHERE id > 0",
      "export", via="ordered-set aggregate"),
    A("SELECT mode() WITHIN GROUP (ORDER BY name) FROM patients WHERE id > 0", "export"),
    A("SELECT rank('x') WITHIN GROUP (ORDER BY name) FROM patients WHERE id > 0", "export"),
    A("SELECT leak_agg(p) FROM patients p WHERE id > 0", "export", via="function leak_agg"),
    A("SELECT public.upper(name) FROM patients WHERE id > 0", "export"),
    A("SELECT any_value(ssn) FROM patients WHERE id > 0", "export"),
    # encodings and casts wrapped around them
    A("SELECT encode(convert_to(string_agg(ssn, ','), 'UTF8'), 'base64') FROM patients "
      "WHERE id > 0", "export", via="string_agg"),
    A("SELECT md5(string_agg(ssn, ',')) || string_agg(ssn, ',') FROM patients WHERE id > 0",
      "export"),
    A("SELECT array_agg(ssn)::text FROM patients WHERE id > 0", "export"),
    A("SELECT CAST(jsonb_agg(p) AS text) FROM patients p WHERE id > 0", "export"),
    A("SELECT format('%s', array_agg(ssn)) FROM patients WHERE id > 0", "export"),
    A("SELECT concat('x', (SELECT string_agg(ssn, ',') FROM patients WHERE id > 0))", "export"),
    A("SELECT 'x' || (SELECT string_agg(ssn, ',') FROM patients WHERE id > 0)", "export"),
    A("SELECT translate(string_agg(ssn, ''), '0123456789', 'abcdefghij') FROM patients "
      "WHERE id > 0", "export"),
    A("SELECT to_jsonb(array_agg(p)) #>> '{}' FROM patients p WHERE id > 0", "export"),
    # nesting, scalar subqueries, ARRAY(), LATERAL, set-returning functions
    A("SELECT (SELECT json_agg(p) FROM patients p WHERE p.id > 0)", "export"),
    A("SELECT ARRAY(SELECT ssn FROM patients WHERE id > 0)", "export", via="ARRAY(subquery)"),
    A("SELECT JSON_ARRAY(SELECT ssn FROM patients WHERE id > 0)", "export",
      via="JSON_ARRAY(subquery)"),
    A("SELECT ARRAY(SELECT ssn FROM patients ORDER BY id LIMIT 500 OFFSET g * 500) "
      "FROM generate_series(0, 3) g", "export", via="ARRAY(subquery)"),
    A("SELECT x FROM generate_series(0, 3) g, LATERAL (SELECT string_agg(ssn, ',') FROM "
      "patients WHERE id % 4 = g) x(x)", "export"),
    A("SELECT s.a FROM generate_series(0, 3) g, LATERAL (SELECT string_agg(ssn, ',') a FROM "
      "(SELECT ssn FROM patients ORDER BY id LIMIT 500 OFFSET g * 500) p) s", "export"),
    A("SELECT string_agg(ssn, ',') FROM generate_series(0, 3) g, LATERAL "
      "(SELECT ssn FROM patients ORDER BY id LIMIT 500 OFFSET g * 500) p", "export"),
    A("SELECT unnest(array_agg(ssn)) FROM patients WHERE id > 0", "export"),
    A("SELECT * FROM jsonb_array_elements((SELECT jsonb_agg(p) FROM patients p WHERE id > 0))",
      "export"),
    A("SELECT string_agg((SELECT ssn FROM patients WHERE id = g), ',') "
      "FROM generate_series(1, 2000) g", "export"),
    A("SELECT string_agg(x, ',') FROM unnest(ARRAY(SELECT ssn FROM patients LIMIT 400)) x",
      "export"),
    A("SELECT string_agg(v, ',') FROM (SELECT name FROM patients WHERE id > 0) s(v)", "export"),
    A("SELECT string_agg(a.ssn || b.ssn, ',') FROM (SELECT ssn FROM patients LIMIT 300) a, "
      "(SELECT ssn FROM patients LIMIT 300 OFFSET 300) b", "export"),
    A("SELECT row_to_json(t) FROM (SELECT array_agg(ssn) a FROM patients WHERE id > 0) t",
      "export"),
    # views, CTEs, recursive CTEs
    A("SELECT jsonb_agg(v) FROM patient_directory v WHERE v.id > 0", "export"),
    A("WITH p AS (SELECT * FROM patients WHERE id > 0) SELECT jsonb_agg(p) FROM p", "export"),
    A("WITH p AS (SELECT ssn FROM patients WHERE id > 0), q AS (SELECT array_agg(ssn) a FROM p) "
      "SELECT a FROM q", "export"),
    # a CTE named like a PHI table: the collapse analysis counts the table too (conservative)
    A("WITH patients AS (SELECT 1 AS id) SELECT (SELECT json_agg(x) FROM patients x)", "export",
      "export"),
    A("WITH RECURSIVE r(n, acc) AS (SELECT 0, ''::text UNION ALL SELECT n + 1, acc || "
      "(SELECT ssn FROM patients WHERE id = n + 1) FROM r WHERE n < 2000) "
      "SELECT acc FROM r ORDER BY n DESC LIMIT 1", "export", via="recursive CTE r"),
    A("WITH RECURSIVE r AS (SELECT id, ssn FROM patients WHERE id = 1 UNION ALL "
      "SELECT p.id, r.ssn || p.ssn FROM patients p JOIN r ON p.id = r.id + 1) "
      "SELECT * FROM r WHERE id = 2000", "export"),
    # window functions: a frame carries another row, or the partition, into each row
    A("SELECT name, lag(ssn, 1) OVER (ORDER BY id), lag(ssn, 2) OVER (ORDER BY id) "
      "FROM patients WHERE id > 0", "export", via="window function lag"),
    A("SELECT string_agg(ssn, ',') OVER () FROM patients WHERE id = 1", "export"),
    A("SELECT max(ssn) OVER (ORDER BY id ROWS BETWEEN 3 PRECEDING AND 3 PRECEDING) "
      "FROM patients WHERE id > 0", "export"),
    A("SELECT first_value(ssn) OVER w, nth_value(ssn, 2) OVER w FROM patients WHERE id > 0 "
      "WINDOW w AS (ORDER BY id)", "export"),
    A("SELECT JSON_OBJECTAGG(id : ssn) OVER () FROM patients WHERE id = 1", "export"),
    A("SELECT sum(id) OVER (ROWS BETWEEN 1 FOLLOWING AND 1 FOLLOWING) FROM patients WHERE id > 0",
      "export"),
    # GROUP BY cannot hide a collecting aggregate
    A("SELECT sex, array_agg(ssn) FROM patients GROUP BY sex", "export"),
    A("SELECT dob, string_agg(name, ',') FROM patients WHERE id > 0 GROUP BY dob "
      "HAVING count(*) > 0", "export"),
    A("SELECT sex FROM patients GROUP BY sex ORDER BY string_agg(ssn, ',')", "export"),
    # cursors, prepared statements, DML, COPY
    A("DECLARE c CURSOR FOR SELECT jsonb_agg(p) FROM patients p WHERE id > 0", "export"),
    A("PREPARE q AS SELECT string_agg(ssn, ',') FROM patients WHERE id > $1", "export"),
    A("CREATE TEMP TABLE t AS SELECT array_agg(ssn) a FROM patients WHERE id > 0", "export",
      "phi"),
    A("COPY (SELECT jsonb_agg(p) FROM patients p WHERE id > 0) TO STDOUT", "export", "phi"),
    A("EXPLAIN ANALYZE SELECT jsonb_agg(p) FROM patients p WHERE id > 0", "export"),
    # statistics and other sessions' statements
    A("SELECT most_common_vals FROM pg_stats", "export", via="planner statistics"),
    A("SELECT histogram_bounds FROM pg_catalog.pg_stats WHERE tablename = 'patients'",
      "export", via="planner statistics"),
    A("SELECT * FROM pg_stats_ext", "export", via="planner statistics"),
    A("SELECT * FROM pg_stats_ext_exprs", "export", via="planner statistics"),
    A("SELECT stavalues1 FROM pg_statistic", "export", via="planner statistics"),
    A("SELECT * FROM pg_catalog.pg_statistic_ext_data", "export", via="planner statistics"),
    A("SELECT * FROM pg_stats WHERE tablename = 'departments' OR true", "export",
      via="planner statistics"),
    A("SELECT * FROM pg_stats WHERE tablename = $1", "export", via="planner statistics"),
    A("SELECT s.* FROM pg_stats s JOIN pg_class c ON c.relname = s.tablename "
      "WHERE s.tablename = 'departments'", "export", via="planner statistics"),
    A("SELECT query FROM pg_stat_activity", "allow"),
    A("SELECT query FROM pg_catalog.pg_stat_activity WHERE pid <> pg_backend_pid()", "allow"),
    A("SELECT * FROM pg_stat_get_activity(NULL)", "allow"),
    A("SELECT pg_stat_get_backend_activity(s) FROM pg_stat_get_backend_idset() s", "allow"),
    A("SELECT query FROM pg_stat_statements", "allow"),
    A("SELECT * FROM public.pg_stat_statements(true)", "allow"),
    A("SELECT (SELECT string_agg(query, ';') FROM pg_stat_activity)", "allow"),
    # functions whose bodies read PHI (tests/policies/functions_catalog.py)
    A("SELECT leak_sql()", "export", via="function leak_sql (its body reads patients"),
    A("SELECT leak_definer()", "export", via="function leak_definer"),
    A("SELECT * FROM leak_setof()", "export", via="function leak_setof"),
    A("SELECT x.mrn FROM leak_setof() x WHERE x.id > 0", "export"),
    A("SELECT leak_atomic()", "export"),
    A("SELECT leak_return()", "export"),
    A("SELECT wrap_sql()", "export", via="function public.leak_sql"),
    A("SELECT 1 FROM departments WHERE leak_sql() IS NOT NULL", "export"),
    A("SELECT (SELECT leak_sql())", "export"),
    A("SELECT * FROM fn_view", "export", via="function public.leak_sql"),
    A("SELECT 1 ### 2", "export", via="function public.op_leak"),
    A("SELECT 1::boxed", "export", via="function public.to_boxed"),
    A("SELECT leak_plpgsql()", "allow"),  # opaque: PHI (byte limits apply), not provably bulk
    A("SELECT wrap_opaque()", "allow"),
    A("SELECT encode(convert_to(leak_plpgsql(), 'UTF8'), 'base64')", "allow"),
    A("DECLARE c2 CURSOR FOR SELECT * FROM leak_setof()", "export"),
    A("PREPARE q2 AS SELECT leak_sql()", "export"),
    A("SELECT get_mrn(7)", "allow"),
    A("SELECT initials(ssn) FROM patients WHERE id > 0", "allow"),
    A("SELECT my_concat(ssn) FROM patients WHERE id > 0", "export", via="function my_concat"),
    A("SELECT dept_name(1), ext_digest('x')", "allow", "allow"),
    # the legitimate work of the clinic policy keeps working
    A("SELECT count(*) FROM patients WHERE id > 0", "allow"),
    A("SELECT avg(extract(year FROM dob)) FROM patients", "allow"),
    A("SELECT sex, count(*), min(dob), max(dob) FROM patients GROUP BY sex", "allow"),
    A("SELECT name, dob FROM patients WHERE id = $1", "allow"),
    A("SELECT upper(name), to_char(dob, 'YYYY') FROM patients WHERE id = 42", "allow"),
    A("SELECT string_agg(ssn, ',') FROM (SELECT ssn FROM patients ORDER BY id LIMIT 100) s",
      "allow"),
    A("WITH s AS (SELECT ssn FROM patients WHERE id > 0 LIMIT 500) "
      "SELECT jsonb_agg(s) FROM s", "allow"),
    A("SELECT ARRAY(SELECT code FROM lab_results WHERE patient_id = 42 LIMIT 50)", "allow"),
    A("SELECT row_number() OVER (ORDER BY id), count(*) OVER (), name FROM patients "
      "WHERE id > 0", "allow"),
    A("SELECT string_agg(name, ',') FROM departments", "allow", "allow"),
    A("SELECT * FROM pg_stats WHERE tablename = 'departments'", "allow", "allow"),
    A("SELECT * FROM pg_stats WHERE schemaname = 'public' AND tablename IN ('departments')",
      "allow", "allow"),
    A("SELECT * FROM pg_statistic WHERE starelid = 'departments'::regclass", "allow", "allow"),
    A("SELECT stxname FROM pg_statistic_ext", "allow", "allow"),
)
