"""What the classifier says about a query string: one ``Statement`` per SQL statement.

``policies.classify`` produces these values from the parse tree; ``policies.engine`` decides on
them; the gateway keeps the ``Statement`` of each PREPAREd statement and DECLAREd cursor in its
session so later ``EXECUTE``/``FETCH`` statements are decided on what they really run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# What DDL does to the catalog the policy reads (``Statement.catalog_effect``,
# ``policies.catalog_effects``): "" may change it; TRUNCATES changes nothing unless user code
# runs on the tables' writes (a TRUNCATE trigger); INERT changes nothing (a plain index,
# DROP INDEX, COMMENT) unless an event trigger runs on it.
CatalogEffect = Literal["", "truncates", "inert"]
TRUNCATES: CatalogEffect = "truncates"
INERT: CatalogEffect = "inert"

EffectKind = Literal[
    "prepare",  # PREPARE name AS ...: remember ``statement`` under ``name``
    "deallocate",  # DEALLOCATE name / ALL (``name`` None)
    "declare",  # DECLARE name CURSOR FOR ...: remember ``statement`` under ``name``
    "close",  # CLOSE name / ALL (``name`` None)
    "discard_all",  # DISCARD ALL: forget every prepared statement and cursor
    "set_reason",  # SET phigate.reason = value: consumed by the gateway, not forwarded
    "reset_reason",  # RESET phigate.reason / SET phigate.reason TO DEFAULT
]


@dataclass(frozen=True, slots=True)
class TableRef:
    """A relation as written: schema and catalog only when the SQL gave them.

    Identifiers are as PostgreSQL sees them (unquoted ones folded to lower case). ``name`` is "*"
    for "every table in the schema" (GRANT ... ON ALL TABLES IN SCHEMA).
    """

    name: str
    schema: str | None = None
    catalog: str | None = None

    def __str__(self) -> str:
        return ".".join(p for p in (self.catalog, self.schema, self.name) if p is not None)


@dataclass(frozen=True, slots=True)
class ExportFlow:
    """Rows of ``table`` that reach the client (or a new table) unfiltered.

    "Unfiltered" means through no WHERE that mentions a column and no scalar aggregate; ``limit``
    is the smallest constant LIMIT on the way out (None: none, ``LIMIT ALL``, a parameter, or
    ``WITH TIES``). ``via`` says where the rows go: "select", "cursor", "create table as",
    "insert select", "returning".
    """

    table: TableRef
    limit: int | None
    via: str


@dataclass(frozen=True, slots=True)
class WriteTarget:
    """A relation a statement writes values into: the target of an INSERT, UPDATE or MERGE
    (anywhere, writable CTEs included), of SELECT INTO or of CREATE TABLE AS. ``via`` names the
    command ("insert", "update", "merge", "select into", "create table as"). Written from a PHI
    table into a relation that is not one, it is a bulk export (``policies.evaluate``)."""

    table: TableRef
    via: str


@dataclass(frozen=True, slots=True)
class Relabel:
    """DDL that puts a relation's rows under another name (``policies.renames``).

    ``via`` "rename", "set schema": the relation ``old`` becomes ``new``; "rename schema",
    "rename database": ``old`` and ``new`` name the schema (``name`` "*") or the database
    (``catalog``; schema and name "*"); "no inherit", "detach partition": the child ``old`` is
    cut from its parent ``new``. Stripping a PHI mark this way is a bulk export
    (``policies.evaluate``).
    """

    old: TableRef
    new: TableRef
    via: str


@dataclass(frozen=True, slots=True)
class CollapseInput:
    """Rows a row-collapsing construct reads from ``tables``; ``limit`` bounds how many
    (a constant LIMIT on the subquery that feeds it; None: unbounded)."""

    tables: tuple[TableRef, ...]
    limit: int | None


@dataclass(frozen=True, slots=True)
class Collapse:
    """A construct that can fold many rows into one result row (``policies.collapse``).

    ``construct`` names it for people ("aggregate jsonb_agg", "window function lag",
    "ARRAY(subquery)", "recursive CTE r"); ``inputs`` are the rows it consumes. Over PHI it is
    a bulk export unless every PHI input is bounded and the bounds add up to at most the
    allowing rule's ``max_rows``.
    """

    construct: str
    inputs: tuple[CollapseInput, ...]
    function: str | None = None  # a call that is one only because its name is no built-in


@dataclass(frozen=True, slots=True)
class SystemRead:
    """A read of a catalog that shows PHI of other tables (``policies.systemviews``).

    ``source`` is the relation or function ("pg_stats", "pg_stat_get_activity()"). ``only``
    lists the tables a statistics read is filtered to; None means every PHI table.
    """

    source: str
    only: tuple[TableRef, ...] | None = None


@dataclass(frozen=True, slots=True)
class RowShape:
    """Facts about the outermost row source of a statement, for the journal and for tests."""

    has_where: bool
    limit: int | None
    aggregate_only: bool
    via: str


@dataclass(frozen=True, slots=True)
class SessionEffect:
    """Session state the gateway must update once the statement has succeeded upstream."""

    kind: EffectKind
    name: str | None = None
    statement: Statement | None = None
    value: str | None = None


@dataclass(frozen=True, slots=True)
class Statement:
    """One classified statement.

    ``classes`` is every class the statement needs (``INSERT ... SELECT`` needs insert and
    select; a writable CTE adds its DML class). ``dangerous`` lists why the statement is dangerous
    (empty when it is not). ``exports`` are the unfiltered row flows that make a bulk export when
    they come from a PHI table; ``writes`` are the relations it writes values into (a copy of
    PHI into one that is not a PHI table is a bulk export too); ``collapses`` are the
    row-collapsing constructs (aggregates, windows, ARRAY(subquery), recursive CTEs) and the
    rows they read; ``system_reads`` are reads of statistics and activity catalogs, which show
    PHI of every table; ``copy_to`` marks ``COPY ... TO`` whose every PHI table is a bulk
    export. ``executes``/``fetches`` name the
    prepared statement or cursor whose classification the engine must look up; with
    ``explain_only`` the looked-up statement is only planned.
    """

    text: str
    command: str
    classes: frozenset[str]
    tables: tuple[TableRef, ...] = ()
    functions: tuple[str, ...] = ()
    operators: tuple[str, ...] = ()  # operator names used (A_Expr), for user operators
    casts: tuple[str, ...] = ()  # type names cast to, bare and qualified, for user casts
    dangerous: tuple[str, ...] = ()
    exports: tuple[ExportFlow, ...] = ()
    writes: tuple[WriteTarget, ...] = ()
    relabels: tuple[Relabel, ...] = ()  # DDL that renames, moves or detaches a relation
    collapses: tuple[Collapse, ...] = ()
    system_reads: tuple[SystemRead, ...] = ()
    shape: RowShape | None = None
    copy_to: bool = False
    executes: str | None = None
    fetches: str | None = None
    explain_only: bool = False
    effect: SessionEffect | None = None
    locks_rows: bool = False  # FOR UPDATE/SHARE somewhere in a SELECT: it takes row locks
    # Per set-operation branch, the relations behind each source of a result row
    # (policies.weights): a row carrying N PHI sources counts N toward max_rows.
    row_sources: tuple[tuple[tuple[TableRef, ...], ...], ...] = ()
    catalog_effect: CatalogEffect = ""  # DDL only: see CatalogEffect

    @property
    def is_dangerous(self) -> bool:
        return bool(self.dangerous)


@dataclass(frozen=True, slots=True)
class Classification:
    """A whole query string: its statements in order, or the reason it could not be parsed."""

    sql: str
    statements: tuple[Statement, ...]
    error: str | None = None
    # When the parser rejected the text: its own message and the 1-based character position,
    # which the gateway sends back as PostgreSQL would (SQLSTATE 42601).
    syntax_error: str | None = None
    error_position: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
