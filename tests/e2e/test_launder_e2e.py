"""Laundering PHI through names, as an insider who may run DDL, through a real gateway.

The break-glass identity (``oncall`` with a reason, example clinic policy) may run DDL and
write, but ``no-bulk-export`` forbids it bulk exports. The policy knows PHI tables by name, so
each attack puts PHI rows under a name that reads as no PHI and then reads them in bulk:
renaming a PHI table or moving it to another schema, cutting a child from its PHI parent,
renaming a temporary table named like a PHI table after filling it. Each is refused (42501),
journaled with its reason, and the rows stay where they were (checked on the database).
``public.lab_launder`` is a PHI table by the pattern ``clinic.public.lab_*``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest

from tests.conftest import ClusterInfo
from tests.e2e.harness import CLINIC_POLICY, GatewayProcess
from tests.e2e.test_copies_e2e import REASON, _journal

PHI = "public.lab_launder"


@pytest.fixture()
def phi_table(pg_cluster: ClusterInfo) -> Iterator[str]:
    """A PHI table (by pattern) owned by the service role, so its DDL would succeed."""
    owner = pg_cluster.service_user
    pg_cluster.cluster.execute(
        "DROP TABLE IF EXISTS public.lab_launder, public.launder_out, public.launder_kid, "
        "public.launder_copy, public.launder_stage, public.lab_launder_stage CASCADE; "
        "DROP SCHEMA IF EXISTS launder CASCADE;\n"
        f"CREATE TABLE {PHI} AS SELECT id, mrn, ssn FROM patients;\n"
        f"ALTER TABLE {PHI} OWNER TO {owner};\n"
        f"CREATE SCHEMA launder AUTHORIZATION {owner};\n", dbname=pg_cluster.database)
    yield PHI
    pg_cluster.cluster.execute(
        "DROP TABLE IF EXISTS public.lab_launder, public.launder_out, public.launder_kid, "
        "public.launder_copy, public.launder_stage, public.lab_launder_stage CASCADE; "
        "DROP SCHEMA IF EXISTS launder CASCADE",
        dbname=pg_cluster.database)


def _on_database(pg_cluster: ClusterInfo, sql: str) -> str:
    return pg_cluster.cluster.execute(sql, dbname=pg_cluster.database).strip()


def _refused(conn: psycopg.Connection, sql: str, what: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
        conn.execute(sql)
    message = refused.value.diag.message_primary or ""
    assert message.startswith("phigate: rule no-bulk-export denies bulk export"), message
    assert what in message, message


def _journaled(gateway: GatewayProcess, sql: str, what: str) -> None:
    entries = _journal(gateway, sql)
    assert entries and all(e.get("bulk_export") for e in entries), entries
    assert any(v.startswith(what) for e in entries for v in e.get("export_via", [])), entries


@pytest.mark.parametrize(("sql", "what"), [
    ("ALTER TABLE lab_launder RENAME TO launder_out",
     "rename of lab_launder to launder_out, which is not a PHI table name"),
    ("ALTER TABLE public.lab_launder SET SCHEMA launder",
     "set schema of public.lab_launder to launder.lab_launder"),
    ("ALTER VIEW lab_launder RENAME TO launder_out", "rename of lab_launder to launder_out"),
])
def test_a_phi_table_cannot_be_renamed_out_of_its_pattern(
        start_gateway: Callable[..., GatewayProcess], pg_cluster: ClusterInfo, phi_table: str,
        sql: str, what: str) -> None:
    gateway = start_gateway({"policies": [str(CLINIC_POLICY)]})
    with psycopg.connect(gateway.dsn("oncall"), autocommit=True, options=REASON) as conn:
        _refused(conn, sql, what)
        # a new name the pattern still matches keeps the mark, so it is allowed
        conn.execute("ALTER TABLE lab_launder RENAME TO lab_launder2")
        conn.execute("ALTER TABLE lab_launder2 RENAME TO lab_launder")
    assert _on_database(pg_cluster, f"SELECT count(*) FROM {PHI}") == str(pg_cluster.patients)
    _journaled(gateway, sql, what.split(",")[0])


def test_a_child_of_a_phi_table_cannot_be_cut_loose(
        start_gateway: Callable[..., GatewayProcess], pg_cluster: ClusterInfo,
        phi_table: str) -> None:
    gateway = start_gateway({"policies": [str(CLINIC_POLICY)]})
    cut = "ALTER TABLE launder_kid NO INHERIT lab_launder"
    with psycopg.connect(gateway.dsn("oncall"), autocommit=True, options=REASON) as conn:
        conn.execute("CREATE TABLE public.launder_kid () INHERITS (public.lab_launder)")
        # a child of a PHI table reads as PHI, so a copy into it is no export
        conn.execute("INSERT INTO launder_kid SELECT * FROM lab_launder WHERE id < 400")
        _refused(conn, cut, "no inherit of launder_kid from lab_launder, which leaves it no "
                 "PHI table")
        # reading the child is reading PHI
        _refused(conn, "SELECT * FROM launder_kid", "unfiltered rows")
    assert _on_database(pg_cluster, "SELECT count(*) FROM pg_inherits WHERE inhrelid = "
                        "'public.launder_kid'::regclass") == "1"
    _journaled(gateway, cut, "no inherit of launder_kid")


def test_a_temporary_table_named_like_a_phi_table_stays_phi(
        start_gateway: Callable[..., GatewayProcess], pg_cluster: ClusterInfo,
        phi_table: str) -> None:
    # pg_temp comes first in the search_path: "lab_launder" is the temporary table, which
    # reads as PHI by its name, so filling it is a copy between PHI tables; it must stay PHI
    gateway = start_gateway({"policies": [str(CLINIC_POLICY)]})
    rename = "ALTER TABLE lab_launder RENAME TO launder_tmp"
    with psycopg.connect(gateway.dsn("oncall"), autocommit=True, options=REASON) as conn:
        conn.execute(f"CREATE TEMP TABLE lab_launder (LIKE {PHI})")
        conn.execute(f"INSERT INTO lab_launder SELECT * FROM {PHI} WHERE id < 400")
        _refused(conn, rename, "rename of lab_launder to launder_tmp")
        _refused(conn, "SELECT * FROM pg_temp.lab_launder", "unfiltered rows")
        _refused(conn, "CREATE TABLE public.launder_copy AS TABLE lab_launder",
                 "copy into public.launder_copy, which is not a PHI table")
        _refused(conn, "CREATE TEMP TABLE launder_copy AS SELECT * FROM lab_launder "
                 "WHERE id < 400", "copy into pg_temp.launder_copy")
        kept = conn.execute("SELECT count(*) FROM pg_temp.lab_launder").fetchone()
    assert kept == (pg_cluster.patients,)
    _journaled(gateway, rename, "rename of lab_launder to launder_tmp")


def test_a_same_named_table_earlier_in_the_search_path_is_no_phi_target(
        start_gateway: Callable[..., GatewayProcess], pg_cluster: ClusterInfo,
        phi_table: str) -> None:
    # SET search_path = launder, public: "lab_launder" now means launder.lab_launder, which
    # no pattern names; filling it under the PHI table's bare name would copy PHI out
    gateway = start_gateway({"policies": [str(CLINIC_POLICY)]})
    copy = f"INSERT INTO lab_launder SELECT * FROM {PHI} WHERE id < 400"
    made = "CREATE TABLE lab_launder_made AS SELECT * FROM public.lab_launder WHERE id < 400"
    with psycopg.connect(gateway.dsn("oncall"), autocommit=True, options=REASON) as conn:
        conn.execute(f"CREATE TABLE launder.lab_launder (LIKE {PHI})")
        conn.execute("SET search_path = launder, public")
        _refused(conn, copy, "copy into lab_launder, which is not a PHI table (insert)")
        # a new table goes into the path's first schema: launder, no PHI schema
        _refused(conn, made, "copy into lab_launder_made, which is not a PHI table")
        _refused(conn, "SELECT * INTO lab_launder_into FROM public.lab_launder WHERE id < 9",
                 "copy into lab_launder_into, which is not a PHI table (select into)")
        # so does a transaction that makes the shadow itself (its DDL is not committed)
        conn.execute("BEGIN")
        conn.execute(f"CREATE TABLE launder.lab_launder_tx (LIKE {PHI})")
        _refused(conn, f"INSERT INTO lab_launder_tx SELECT * FROM {PHI} WHERE id < 9",
                 "copy into lab_launder_tx, which is not a PHI table (insert)")
        conn.execute("ROLLBACK")
        # qualified, the PHI table is a PHI target as before
        conn.execute(f"INSERT INTO {PHI} SELECT * FROM {PHI} WHERE id < 3")
    assert _on_database(pg_cluster, "SELECT count(*) FROM launder.lab_launder") == "0"
    _journaled(gateway, copy, "copy into lab_launder")


def test_a_view_named_like_a_phi_table_over_another_table_is_no_phi_target(
        start_gateway: Callable[..., GatewayProcess], pg_cluster: ClusterInfo,
        phi_table: str) -> None:
    # lab_launder_v matches lab_*, so its reads are PHI reads; but what is written into it
    # lands in launder_out, whose reads are not
    gateway = start_gateway({"policies": [str(CLINIC_POLICY)]})
    copy = f"INSERT INTO lab_launder_v SELECT * FROM {PHI} WHERE id < 400"
    with psycopg.connect(gateway.dsn("oncall"), autocommit=True, options=REASON) as conn:
        conn.execute(f"CREATE TABLE public.launder_out (LIKE {PHI})")
        conn.execute("CREATE VIEW public.lab_launder_v AS SELECT * FROM public.launder_out")
        _refused(conn, copy, "copy into lab_launder_v, which is not a PHI table (insert)")
        # a temporary view of that name fares no better (pg_temp comes first in the path)
        conn.execute("CREATE TEMP VIEW lab_launder AS SELECT * FROM public.launder_out")
        _refused(conn, f"INSERT INTO lab_launder SELECT * FROM {PHI} WHERE id < 400",
                 "copy into lab_launder, which is not a PHI table (insert)")
    assert _on_database(pg_cluster, "SELECT count(*) FROM public.launder_out") == "0"
    _journaled(gateway, copy, "copy into lab_launder_v")


@pytest.mark.parametrize("attach", [
    "ALTER TABLE lab_launder INHERIT launder_out",
    "ALTER TABLE launder_out ATTACH PARTITION lab_launder FOR VALUES FROM (0) TO (100000)",
])
def test_a_parent_of_a_phi_table_reads_as_it(
        start_gateway: Callable[..., GatewayProcess], pg_cluster: ClusterInfo, phi_table: str,
        attach: str) -> None:
    # reading a parent reads its children's rows: made the parent of the PHI table, a plain
    # table would hand them out as no PHI
    gateway = start_gateway({"policies": [str(CLINIC_POLICY)]})
    partitioned = " PARTITION BY RANGE (id)" if "PARTITION" in attach else ""
    read = "SELECT * FROM launder_out"
    with psycopg.connect(gateway.dsn("oncall"), autocommit=True, options=REASON) as conn:
        conn.execute(f"CREATE TABLE public.launder_out (LIKE {PHI}){partitioned}")
        conn.execute(attach)
        _refused(conn, read, "unfiltered rows")
        _refused(conn, "COPY launder_out TO STDOUT", "COPY ... TO")
        assert conn.execute("SELECT count(*) FROM launder_out WHERE id < 5").fetchone() == (4,)
    _journaled(gateway, read, "unfiltered rows")


def test_a_temporary_parent_of_a_temporary_phi_table_reads_as_it(
        start_gateway: Callable[..., GatewayProcess], pg_cluster: ClusterInfo,
        phi_table: str) -> None:
    # the temporary child is named like the PHI table, so filling it is a copy between PHI
    # tables; its parent must then read as PHI too (the catalog must learn the inheritance
    # made by CREATE TEMP TABLE ... INHERITS)
    gateway = start_gateway({"policies": [str(CLINIC_POLICY)]})
    with psycopg.connect(gateway.dsn("oncall"), autocommit=True, options=REASON) as conn:
        conn.execute(f"CREATE TEMP TABLE launder_par (LIKE {PHI})")
        assert conn.execute("SELECT count(*) FROM launder_par").fetchone() == (0,)
        conn.execute("CREATE TEMP TABLE lab_launder () INHERITS (launder_par)")
        conn.execute(f"INSERT INTO lab_launder SELECT * FROM {PHI} WHERE id < 400")
        _refused(conn, "SELECT * FROM launder_par", "unfiltered rows")


def test_a_rule_of_a_phi_table_that_copies_into_another_table_makes_a_write_a_copy(
        start_gateway: Callable[..., GatewayProcess], pg_cluster: ClusterInfo,
        phi_table: str) -> None:
    # a rule on a PHI table that also inserts each row into launder_out is itself refused
    # (its action copies the table's rows); made on a plain table that is then renamed to a
    # PHI name, it would turn a copy between PHI tables into a copy out
    gateway = start_gateway({"policies": [str(CLINIC_POLICY)]})
    copy = f"INSERT INTO lab_launder_stage SELECT * FROM {PHI} WHERE id < 400"
    also = "DO ALSO INSERT INTO public.launder_out VALUES (NEW.*)"
    with psycopg.connect(gateway.dsn("oncall"), autocommit=True, options=REASON) as conn:
        conn.execute(f"CREATE TABLE public.launder_out (LIKE {PHI})")
        _refused(conn, f"CREATE RULE launder_also AS ON INSERT TO {PHI} {also}",
                 "copy into public.launder_out")
        conn.execute(f"CREATE TABLE public.launder_stage (LIKE {PHI})")
        conn.execute(f"CREATE RULE launder_also AS ON INSERT TO public.launder_stage {also}")
        conn.execute("ALTER TABLE public.launder_stage RENAME TO lab_launder_stage")
        _refused(conn, copy, "copy into public.launder_out, which is not a PHI table "
                 "(insert in rule of lab_launder_stage)")
    assert _on_database(pg_cluster, "SELECT count(*) FROM public.launder_out") == "0"
    _journaled(gateway, copy, "copy into public.launder_out")
