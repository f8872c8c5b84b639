-- Our own script in the manner of PostgreSQL 15's largeobject regression test: large objects
-- through SQL and through psql's fast-path commands, in and out of transactions, including
-- read-only transactions. Run through the gateway and directly; outputs must match.
SET bytea_output TO escape;
CREATE TABLE robust_lo_stash (loid oid, fd integer);
INSERT INTO robust_lo_stash (loid) SELECT lo_creat(42);
BEGIN;
UPDATE robust_lo_stash SET fd = lo_open(loid, CAST(x'20000' | x'40000' AS integer));
SELECT lowrite(fd, 'The quick brown fox
jumps over the lazy dog,
and the dog, being lazy,
does not mind at all.
') FROM robust_lo_stash;
SELECT lo_close(fd) FROM robust_lo_stash;
END;

BEGIN;
UPDATE robust_lo_stash SET fd = lo_open(loid, CAST(x'20000' | x'40000' AS integer));
SELECT lo_lseek(fd, 10, 0) FROM robust_lo_stash;
SELECT loread(fd, 9) FROM robust_lo_stash;
SELECT lo_lseek(fd, -4, 1) FROM robust_lo_stash;
SELECT lowrite(fd, 'F') FROM robust_lo_stash;
SELECT lo_tell(fd) FROM robust_lo_stash;
SELECT lo_lseek(fd, -22, 2) FROM robust_lo_stash;
SELECT loread(fd, 22) FROM robust_lo_stash;
SELECT lo_truncate(fd, 19) FROM robust_lo_stash;
SELECT lo_lseek64(fd, 0, 2) FROM robust_lo_stash;
SELECT lo_tell64(fd) FROM robust_lo_stash;
SELECT lo_close(fd) FROM robust_lo_stash;
END;

BEGIN;
SELECT lo_open(loid, x'40000'::int) FROM robust_lo_stash;
ABORT;

SELECT lo_from_bytea(0, lo_get(loid)) AS copied FROM robust_lo_stash
\gset
SELECT lo_get(:copied, 4, 11);
SELECT lo_put(:copied, 4, 'QUICK');
SELECT lo_get(:copied);

-- psql's client-side commands use libpq's fast-path calls
\lo_export :copied :workdir/exported.txt
\lo_import :workdir/exported.txt
\set imported :LASTOID
SELECT lo_get(:imported) = lo_get(:copied);
BEGIN;
\lo_import :workdir/exported.txt
\set second :LASTOID
\lo_export :second :workdir/exported2.txt
\lo_unlink :second
COMMIT;

START TRANSACTION READ ONLY;
SELECT lo_open(:copied, x'40000'::int);
SELECT lo_open(:copied, x'20000'::int);
ROLLBACK;
START TRANSACTION READ ONLY;
SELECT lo_creat(42);
ROLLBACK;
START TRANSACTION READ ONLY;
\lo_import :workdir/exported.txt
ROLLBACK;
START TRANSACTION READ ONLY;
SELECT lo_put(:copied, 0, 'x');
ROLLBACK;

SELECT lo_unlink(loid) FROM robust_lo_stash;
\lo_unlink :copied
\lo_unlink :imported
DROP TABLE robust_lo_stash;
SELECT 'done';
