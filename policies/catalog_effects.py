"""Which statements may change what the policy reads from the catalog.

DDL, ``DO`` and ``CALL`` may (``policies.views.CATALOG_CHANGING``): the gateway then decides the
session's later statements as if its relations could mean anything until its transaction
ended, and reads the catalog again before anyone's next statement. Some DDL writes no catalog
row the policy reads (``Statement.catalog_effect``, set by the classifier): ``TRUNCATE``, an
index on plain columns, ``DROP INDEX``, ``COMMENT``. Such a statement changes nothing unless
user code runs with it: an event trigger (a superuser's), or for ``TRUNCATE`` a trigger
(any function run on any table's writes counts, since inheritance children are truncated
too). What runs is known only from a catalog that was read
(:class:`~policies.functions.FunctionCatalog`); without one, all DDL changes the catalog.
Pure: runs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from policies.functions import FunctionCatalog
from policies.statement import TRUNCATES, Statement
from policies.views import CATALOG_CHANGING


def changes_catalog(statement: Statement, functions: FunctionCatalog | None) -> bool:
    """Whether ``statement`` may change what the policy reads from the catalog."""
    if CATALOG_CHANGING.isdisjoint(statement.classes):
        return False
    effect = statement.catalog_effect
    if not effect or functions is None or not functions.known:
        return True
    if functions.event_triggers:
        return True
    return effect == TRUNCATES and bool(functions.writes or functions.write_relations)


def any_changes_catalog(classes: Iterable[str], statements: Iterable[Statement],
                        functions: FunctionCatalog | None) -> bool:
    """A decision's: its classes say DDL and one of its statements changes the catalog, or
    none of them is the DDL (it came from elsewhere, e.g. a prepared statement)."""
    if CATALOG_CHANGING.isdisjoint(classes):
        return False
    ddl = [s for s in statements if not CATALOG_CHANGING.isdisjoint(s.classes)]
    return not ddl or any(changes_catalog(s, functions) for s in ddl)
