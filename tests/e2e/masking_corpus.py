"""The masking corpus: statements an insider would try to get a clear identifier out, with what
an engineer (masked session) must receive for each output column.

Codes per output column: ``P`` ssn partial(last=4) (``***-**-6789``), ``H`` keyed hash (16 hex
digits), ``Y`` year only (January 1st), ``R`` redacted (``****`` or NULL), ``C`` clear (what a
clinician sees), ``S`` scrubbed by a detector (``[kind]`` in place of the identifier). ``REFUSED``:
the statement is refused with a phigate error. Patient 7 has ssn 123-45-6789.
"""

from __future__ import annotations

REFUSED = "refused"

CORPUS: list[tuple[str, str]] = [
    # plain columns, aliases, qualification, casts
    ("SELECT ssn FROM patients WHERE id = 7", "P"),
    ("SELECT id, ssn FROM patients WHERE id = 7", "CP"),
    ("SELECT ssn AS x FROM patients WHERE id = 7", "P"),
    ("SELECT ssn AS id FROM patients WHERE id = 7", "P"),
    ("SELECT first_name AS ssn FROM patients WHERE id = 7", "R"),
    ("SELECT p.ssn FROM patients p WHERE p.id = 7", "P"),
    ("SELECT public.patients.ssn FROM public.patients WHERE id = 7", "P"),
    ('SELECT "ssn" FROM "patients" WHERE id = 7', "P"),
    ("SELECT ssn::text FROM patients WHERE id = 7", "P"),
    ("SELECT CAST(ssn AS text) FROM patients WHERE id = 7", "P"),
    ("SELECT ssn::varchar FROM patients WHERE id = 7", REFUSED),
    ("SELECT ssn::bytea FROM patients WHERE id = 7", REFUSED),
    ("SELECT email, email FROM patients WHERE id = 7", "HH"),
    ("SELECT date_of_birth FROM patients WHERE id = 7", "Y"),
    ("SELECT date_of_birth::text FROM patients WHERE id = 7", REFUSED),
    ("SELECT first_name, last_name, phone FROM patients WHERE id = 7", "RRR"),
    ("SELECT city, state FROM patients WHERE id = 7", "CC"),
    ("SELECT mrn FROM patients WHERE id = 7", "R"),
    ("SELECT DISTINCT ssn FROM patients WHERE id = 7", "P"),
    ("SELECT ssn FROM patients WHERE id = 7 LIMIT 1", "P"),
    ("SELECT ssn FROM patients WHERE ssn = '123-45-6789'", "P"),
    ("SELECT id FROM patients WHERE ssn LIKE '123%' AND id = 7", "C"),
    # subqueries, CTEs, LATERAL, joins
    ("SELECT x FROM (SELECT ssn AS x FROM patients WHERE id = 7) s", "P"),
    ("SELECT s.* FROM (SELECT ssn FROM patients WHERE id = 7) s", "P"),
    ("WITH c AS (SELECT ssn FROM patients WHERE id = 7) SELECT ssn FROM c", "P"),
    ("WITH c(z) AS (SELECT ssn FROM patients WHERE id = 7) SELECT z FROM c", "P"),
    ("SELECT l.ssn FROM (SELECT 7 AS k) k, LATERAL (SELECT ssn FROM patients "
     "WHERE id = k.k) l", "P"),
    ("SELECT e.id, p.ssn FROM patients p JOIN encounters e ON e.patient_id = p.id "
     "WHERE p.id = 7 LIMIT 1", "RP"),
    ("SELECT (SELECT ssn FROM patients WHERE id = 7)", REFUSED),
    ("SELECT (p).ssn FROM patients p WHERE id = 7", "P"),
    ("SELECT * FROM (SELECT ssn || '' AS x FROM patients WHERE id = 7) s", REFUSED),
    ("SELECT x FROM (SELECT ssn || '' AS x FROM patients WHERE id = 7) s", REFUSED),
    ("WITH c AS (SELECT lower(ssn) AS z FROM patients WHERE id = 7) SELECT z FROM c", REFUSED),
    # expressions over masked columns
    ("SELECT ssn || '' FROM patients WHERE id = 7", REFUSED),
    ("SELECT '' || ssn FROM patients WHERE id = 7", REFUSED),
    ("SELECT concat(ssn) FROM patients WHERE id = 7", REFUSED),
    ("SELECT coalesce(ssn, '') FROM patients WHERE id = 7", REFUSED),
    ("SELECT nullif(ssn, '') FROM patients WHERE id = 7", REFUSED),
    ("SELECT CASE WHEN ssn LIKE '1%' THEN 1 ELSE 0 END FROM patients WHERE id = 7", REFUSED),
    ("SELECT upper(first_name) FROM patients WHERE id = 7", REFUSED),
    ("SELECT substr(ssn, 1, 3) FROM patients WHERE id = 7", REFUSED),
    ("SELECT left(ssn, 3) FROM patients WHERE id = 7", REFUSED),
    ("SELECT length(ssn) FROM patients WHERE id = 7", REFUSED),
    ("SELECT replace(ssn, '-', '') FROM patients WHERE id = 7", REFUSED),
    ("SELECT translate(ssn, '0123456789', 'abcdefghij') FROM patients WHERE id = 7", REFUSED),
    ("SELECT md5(ssn) FROM patients WHERE id = 7", REFUSED),
    ("SELECT ssn > '2' FROM patients WHERE id = 7", REFUSED),
    ("SELECT ascii(ssn) FROM patients WHERE id = 7", REFUSED),
    ("SELECT format('%s', ssn) FROM patients WHERE id = 7", REFUSED),
    ("SELECT ARRAY[ssn] FROM patients WHERE id = 7", REFUSED),
    ("SELECT ROW(ssn) FROM patients WHERE id = 7", REFUSED),
    ("SELECT to_char(date_of_birth, 'MM-DD') FROM patients WHERE id = 7", REFUSED),
    ("SELECT extract(month FROM date_of_birth) FROM patients WHERE id = 7", REFUSED),
    ("SELECT date_of_birth + 0 FROM patients WHERE id = 7", REFUSED),
    # aggregates and windows
    ("SELECT max(ssn) FROM patients WHERE id = 7", REFUSED),
    ("SELECT min(email) FROM patients WHERE id = 7", REFUSED),
    ("SELECT string_agg(ssn, ',') FROM patients WHERE id = 7", REFUSED),
    ("SELECT array_agg(ssn) FROM patients WHERE id = 7", REFUSED),
    ("SELECT count(*) FROM patients WHERE id = 7", "C"),
    ("SELECT count(ssn) FROM patients WHERE id = 7", REFUSED),
    ("SELECT first_value(ssn) OVER () FROM patients WHERE id = 7", REFUSED),
    ("SELECT ssn, count(*) FROM patients WHERE id = 7 GROUP BY ssn", "PC"),
    # whole rows and JSON
    ("SELECT row_to_json(p) FROM patients p WHERE id = 7", REFUSED),
    ("SELECT to_jsonb(p) FROM patients p WHERE id = 7", REFUSED),
    ("SELECT jsonb_agg(p) FROM patients p WHERE id = 7", REFUSED),
    ("SELECT json_build_object('s', ssn) FROM patients WHERE id = 7", REFUSED),
    ("SELECT p FROM patients p WHERE id = 7", REFUSED),
    ("SELECT p::text FROM patients p WHERE id = 7", REFUSED),
    ("SELECT row_to_json(p.*) FROM patients p WHERE id = 7", REFUSED),
    ("SELECT hstore(p) FROM patients p WHERE id = 7", REFUSED),
    # set operations
    ("SELECT ssn FROM patients WHERE id = 7 UNION SELECT 'x'", REFUSED),
    ("SELECT ssn FROM patients WHERE id = 7 UNION ALL SELECT ssn FROM patients WHERE id = 7",
     REFUSED),
    ("SELECT 'x' UNION SELECT ssn FROM patients WHERE id = 7", REFUSED),
    ("SELECT ssn FROM patients WHERE id = 7 INTERSECT SELECT ssn FROM patients", REFUSED),
    ("VALUES ((SELECT ssn FROM patients WHERE id = 7))", REFUSED),
    # views
    ("SELECT tax_id FROM patient_contacts WHERE id = 7", "P"),
    ("SELECT email FROM patient_contacts WHERE id = 7", "H"),
    ("SELECT family FROM patient_contacts WHERE id = 7", REFUSED),
    ("SELECT id FROM patient_contacts WHERE id = 7", "C"),
    ("SELECT first_name FROM patient_directory WHERE id = 7", "R"),
    # functions that hide the table, and calls off the allow-list
    ("SELECT get_ssn(7)", REFUSED),
    ("SELECT public.get_ssn(7)", REFUSED),
    ("SELECT * FROM get_ssn(7)", REFUSED),
    ("SELECT query_to_xml('select ssn from patients', true, true, '')", REFUSED),
    ("SELECT current_setting('search_path') IS NOT NULL", "C"),
    # operators and casts whose user functions read the masked table
    ("SELECT 7 ### 0", REFUSED),
    ("SELECT ssn FROM patients WHERE id = 7 AND 7 ### 0 IS NOT NULL", REFUSED),
    ("SELECT 7::ssn_box", REFUSED),
    ("SELECT 3 @+@ 4", "C"),
    # prepared statements and cursors at the SQL level
    ("PREPARE q AS SELECT ssn FROM patients WHERE id = 7; EXECUTE q; DEALLOCATE q", "P"),
    ("BEGIN; DECLARE c CURSOR FOR SELECT ssn FROM patients WHERE id = 7; FETCH c; COMMIT",
     "P"),
    ("BEGIN; DECLARE c CURSOR FOR SELECT ssn || '' FROM patients WHERE id = 7; FETCH c; "
     "COMMIT", REFUSED),
    # writes that would copy masked values, DDL that would keep them
    ("UPDATE patients SET city = ssn WHERE id = 7", REFUSED),
    ("UPDATE patients SET city = city WHERE id = 7 RETURNING ssn", REFUSED),
    ("CREATE TEMP TABLE t AS SELECT ssn FROM patients WHERE id = 7", REFUSED),
    # content detectors on a table without PHI columns
    ("SELECT body FROM support_notes WHERE id = 1", "S"),
    ("SELECT id, body FROM support_notes WHERE id = 1", "CS"),
    ("SELECT upper(body) FROM support_notes WHERE id = 1", "S"),
    ("SELECT 'SSN 219-09-9999'", "S"),
    ("SELECT 'plain words'", "C"),
    ("SELECT to_jsonb(n) FROM support_notes n WHERE id = 1", "S"),
]
