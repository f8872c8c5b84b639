-- Our own script in the manner of PostgreSQL 15's lock regression test: LOCK TABLE on tables,
-- views of views, views that end up referring to each other, inheritance children, inside
-- transactions and under SET ROLE. Run through the gateway and directly; outputs must match.
CREATE SCHEMA robust_locks;
SET search_path = robust_locks;
CREATE TABLE base_a (a bigint);
CREATE TABLE base_b (a bigint);
CREATE VIEW view_a AS SELECT * FROM base_a;
CREATE VIEW view_ab(a, b) AS SELECT * FROM base_a, base_b;
CREATE VIEW view_of_view AS SELECT * FROM view_ab;
CREATE VIEW view_sub AS SELECT (SELECT a FROM base_b LIMIT 1) FROM base_a;
CREATE VIEW view_in AS SELECT * FROM base_a WHERE a IN (SELECT * FROM base_b);
CREATE ROLE robust_lock_role;
GRANT robust_lock_role TO CURRENT_USER;
GRANT USAGE ON SCHEMA robust_locks TO robust_lock_role;

BEGIN;
LOCK TABLE base_a IN ACCESS SHARE MODE;
LOCK base_a IN ROW SHARE MODE;
LOCK TABLE base_a IN ROW EXCLUSIVE MODE;
LOCK TABLE base_a IN SHARE UPDATE EXCLUSIVE MODE;
LOCK TABLE base_a IN SHARE MODE;
LOCK base_a IN SHARE ROW EXCLUSIVE MODE;
LOCK TABLE base_a IN EXCLUSIVE MODE;
LOCK TABLE base_a IN ACCESS EXCLUSIVE MODE;
ROLLBACK;

BEGIN;
LOCK TABLE base_a IN SHARE MODE NOWAIT;
LOCK TABLE base_a IN ACCESS EXCLUSIVE MODE NOWAIT;
ROLLBACK;

BEGIN;
LOCK TABLE view_of_view IN EXCLUSIVE MODE;
SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
 WHERE c.relname LIKE 'base_%' OR c.relname LIKE 'view_%' AND l.mode = 'ExclusiveLock'
 ORDER BY 1;
ROLLBACK;
BEGIN;
LOCK TABLE view_sub IN EXCLUSIVE MODE;
LOCK TABLE view_in IN EXCLUSIVE MODE;
ROLLBACK;

-- views that refer to each other
CREATE OR REPLACE VIEW view_ab AS SELECT * FROM view_of_view;
BEGIN;
LOCK TABLE view_ab IN EXCLUSIVE MODE;
ROLLBACK;
CREATE VIEW view_top AS SELECT * FROM view_ab;
BEGIN;
LOCK TABLE view_top IN EXCLUSIVE MODE;
SELECT * FROM view_top;
ROLLBACK;
SELECT * FROM view_ab;

-- inheritance children
CREATE TABLE child_a (b bigint) INHERITS (base_a);
CREATE TABLE grandchild_a () INHERITS (child_a);
BEGIN;
LOCK TABLE base_a * IN ACCESS EXCLUSIVE MODE;
SELECT count(*) FROM base_a;
ROLLBACK;

-- a role that may update the parent but not lock its children
GRANT UPDATE ON TABLE base_a TO robust_lock_role;
SET ROLE robust_lock_role;
BEGIN;
LOCK TABLE base_a * IN ACCESS EXCLUSIVE MODE;
ROLLBACK;
BEGIN;
LOCK TABLE ONLY base_a;
SELECT 'locked only the parent';
ROLLBACK;
RESET ROLE;

DROP VIEW view_top;
DROP VIEW view_of_view CASCADE;
DROP SCHEMA robust_locks CASCADE;
REVOKE robust_lock_role FROM CURRENT_USER;
DROP ROLE robust_lock_role;
SELECT 'done';
