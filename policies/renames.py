"""DDL that moves rows out from under a PHI name, read from the parse tree.

The policy knows a PHI table by the name its ``phi_tables`` patterns give (``clinic.public.
patients``), not by its OID. So ``ALTER TABLE patients RENAME TO p2``, ``… SET SCHEMA other``,
``ALTER SCHEMA public RENAME TO x`` and ``ALTER DATABASE clinic RENAME TO c2`` would leave the
rows under a name no pattern matches, to be read in bulk as no PHI at all; ``ALTER TABLE … NO
INHERIT`` and ``DETACH PARTITION`` do the same to a child that is PHI only through its parent.
``classify`` calls :func:`relabels` once per statement; ``policies.evaluate`` makes a relabel
that strips the mark a bulk export (rather than following the OID: a mark that follows the OID
is lost when the gateway restarts after the rename, a refusal is not).
"""

from __future__ import annotations

from policies.sqltree import Json, table_ref, unwrap
from policies.statement import Relabel, TableRef

# ALTER TABLE/INDEX/SEQUENCE/VIEW … RENAME TO: PostgreSQL renames a table by any of them.
_RELATION_OBJECTS = frozenset({"OBJECT_TABLE", "OBJECT_INDEX", "OBJECT_SEQUENCE", "OBJECT_VIEW",
                               "OBJECT_MATVIEW", "OBJECT_FOREIGN_TABLE"})
_CUTS = {"AT_DropInherit": "no inherit", "AT_DetachPartition": "detach partition"}


def relabels(node: Json) -> tuple[Relabel, ...]:
    """What the DDL statement ``node`` renames, moves or cuts from its parent."""
    kind, body = unwrap(node)
    if kind == "RenameStmt":
        return _rename(body)
    if kind == "AlterObjectSchemaStmt" and body.get("objectType") in _RELATION_OBJECTS:
        relation = body.get("relation")
        if isinstance(relation, dict) and body.get("newschema"):
            old = table_ref(relation)
            new = TableRef(old.name, body["newschema"], old.catalog)
            return (Relabel(old, new, "set schema"),)
    if kind == "AlterTableStmt":
        return _cuts(body)
    return ()


def _rename(body: dict[str, Json]) -> tuple[Relabel, ...]:
    what, new = body.get("renameType"), body.get("newname")
    relation = body.get("relation")
    if not new:
        return ()
    if what in _RELATION_OBJECTS and isinstance(relation, dict):
        old = table_ref(relation)
        return (Relabel(old, TableRef(new, old.schema, old.catalog), "rename"),)
    old_name = body.get("subname")
    if what == "OBJECT_SCHEMA" and old_name:
        return (Relabel(TableRef("*", old_name), TableRef("*", new), "rename schema"),)
    if what == "OBJECT_DATABASE" and old_name:
        return (Relabel(TableRef("*", "*", old_name), TableRef("*", "*", new),
                        "rename database"),)
    return ()


def _cuts(body: dict[str, Json]) -> tuple[Relabel, ...]:
    """NO INHERIT (the table is the child) and DETACH PARTITION (the table is the parent)."""
    relation = body.get("relation")
    if not isinstance(relation, dict):
        return ()
    table = table_ref(relation)
    out = []
    for item in body.get("cmds") or ():
        _, cmd = unwrap(item)
        via = _CUTS.get(cmd.get("subtype", ""))
        def_kind, other = unwrap(cmd.get("def"))
        if via is None:
            continue
        if def_kind == "RangeVar":  # NO INHERIT parent
            out.append(Relabel(table, table_ref(other), via))
        elif def_kind == "PartitionCmd" and isinstance(other.get("name"), dict):
            out.append(Relabel(table_ref(other["name"]), table, via))
    return tuple(out)
